"""The coordinator: the entry's one MQTT link, its subscriptions for other modules, the refresh."""

from __future__ import annotations

import pytest
from homeassistant.components import mqtt
from homeassistant.components.mqtt import MQTT_CONNECTION_STATE
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_send
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import protocol

from .conftest import RELAY_NODE, SERVER_ID
from .nodes_common import node_device, published, settle


async def test_node_subscription_for_other_modules(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """`<base>/node/+/<leaf>` by valid id, bytes; hostile ids warned once; ended at unload."""
    coordinator = init_integration.runtime_data.coordinator
    got: list[tuple[str, bytes | str]] = []
    await coordinator.async_subscribe_nodes(
        protocol.NODE_INFO, callback(lambda node, msg: got.append((node, msg.payload))), "an info"
    )
    async_fire_mqtt_message(hass, "home/node/node1/info", b'{"version": "1"}')
    async_fire_mqtt_message(hass, "home/node/no..de/info", b"x")
    async_fire_mqtt_message(hass, "home/node/no..de/info", b"x")
    async_fire_mqtt_message(hass, "home/node/node1/status", b"ONLINE")  # another leaf
    await settle(hass)
    assert got == [("node1", b'{"version": "1"}')]
    assert caplog.text.count("Ignored an info from 'no..de': not a valid node id") == 1
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    async_fire_mqtt_message(hass, "home/node/node1/info", b"after unload")
    await settle(hass)
    assert len(got) == 1


async def test_one_node_subscription(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """One node's leaf (its management replies, say); the returned callback ends it early."""
    coordinator = init_integration.runtime_data.coordinator
    got: list[mqtt.ReceiveMessage] = []
    unsubscribe = await coordinator.async_subscribe_node("node1", protocol.NODE_MGMT_REPLY, got.append)
    async_fire_mqtt_message(hass, "home/node/node1/mgmt/reply", b"abc 0 ok\n")
    async_fire_mqtt_message(hass, "home/node/node2/mgmt/reply", b"abc 0 ok\n")
    await settle(hass)
    assert [(m.topic, m.payload) for m in got] == [("home/node/node1/mgmt/reply", b"abc 0 ok\n")]
    unsubscribe()
    async_fire_mqtt_message(hass, "home/node/node1/mgmt/reply", b"late")
    await settle(hass)
    assert len(got) == 1


async def test_status_reaches_the_node_and_the_server(
    hass: HomeAssistant, init_server: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """One status subscription: the relay node's status is the node's and its server's."""
    filters = [call.args[0] for call in mqtt_mock.async_subscribe.call_args_list]
    assert filters.count("home/node/+/status") == 1
    async_fire_mqtt_message(hass, f"home/node/{RELAY_NODE}/status", "OFFLINE")
    await settle(hass)
    assert node_device(hass, init_server, RELAY_NODE) is not None
    state = hass.states.get(f"binary_sensor.{RELAY_NODE}_status")
    assert state is not None
    assert state.state == "off"
    # the server knows its relay node is offline: a button press would be lost
    async_fire_mqtt_message(hass, f"home/node/{RELAY_NODE}/power", "OFF", retain=True)
    async_fire_mqtt_message(hass, f"home/server/{SERVER_ID}/heartbeat", "DEAD", retain=True)
    await settle(hass)
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            "switch", "turn_on", {ATTR_ENTITY_ID: "switch.nas_power"}, blocking=True
        )
    assert err.value.translation_key == "relay_node_offline"


async def test_reconnect_refreshes_each_topic_once(
    hass: HomeAssistant, init_server: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """The relay node is a known node and a server's: one refresh, the one payload on the wire."""
    async_fire_mqtt_message(hass, f"home/node/{RELAY_NODE}/status", "ONLINE")
    await settle(hass)
    mqtt_mock.async_publish.reset_mock()
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, False)
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, True)
    await settle(hass)
    refreshes = [(t, p, q, r) for t, p, q, r in published(mqtt_mock) if t.endswith("/refresh")]
    assert sorted(refreshes) == [
        (f"home/node/{RELAY_NODE}/refresh", protocol.REFRESH_PAYLOAD, 1, False),
        (f"home/server/{SERVER_ID}/refresh", protocol.REFRESH_PAYLOAD, 1, False),
    ]
