"""The coordinator: the entry's one MQTT link, subscriptions for other modules, availability, the refresh."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from homeassistant.components import mqtt
from homeassistant.components.mqtt import MQTT_CONNECTION_STATE
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import coordinator as coordinator_module
from custom_components.smartserver import protocol
from custom_components.smartserver.helpers import node_identifier
from script.harness.ha import RELAY_NODE, SERVER_ID

from .nodes_common import node_device, node_traffic, published, settle, wait_until


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
    # once per id, whichever subscription heard it first (the firmware manager's, here)
    assert caplog.text.count("from 'no..de': not a valid node id") == 1
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    async_fire_mqtt_message(hass, "home/node/node1/info", b"after unload")
    await settle(hass)
    assert len(got) == 1


async def test_hostile_ids_of_a_relay_nodes_power_are_ignored_quietly(
    hass: HomeAssistant, init_server: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """As before the coordinator: a power sense is only read for the servers' relay nodes."""
    async_fire_mqtt_message(hass, "home/node/no..de/power", "ON")
    await settle(hass)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and "no..de" in r.getMessage()] == []


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
    # the unload ends it again: harmless
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert init_integration.state is ConfigEntryState.NOT_LOADED


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


@pytest.mark.usefixtures("mqtt_client_closing")
async def test_refresh_after_start_and_reconnect(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    for node in ("node1", "node2"):
        dr.async_get(hass).async_get_or_create(
            config_entry_id=mock_config_entry.entry_id, identifiers={node_identifier(node)}, name=node
        )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    def refreshes() -> list[str]:
        return [t for t, p, q, r in published(mqtt_mock) if t.endswith("/refresh")]

    await wait_until(lambda: len(refreshes()) >= 2)  # HA debounces SUBSCRIBE; refresh follows SUBACK
    assert sorted(refreshes()) == ["home/node/node1/refresh", "home/node/node2/refresh"]
    assert all(
        p == protocol.REFRESH_PAYLOAD and q == 1 and not r
        for t, p, q, r in published(mqtt_mock)
        if t.endswith("refresh")
    )
    mqtt_mock.async_publish.reset_mock()
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, False)
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, True)
    await settle(hass)
    assert sorted(refreshes()) == ["home/node/node1/refresh", "home/node/node2/refresh"]
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


async def test_unavailable_while_mqtt_is_disconnected(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    await node_traffic(hass)
    entities = [
        e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, init_integration.entry_id)
        if e.unique_id.startswith("node_node1_") and not e.disabled
    ]
    assert {e.split(".")[0] for e in entities} == {"sensor", "binary_sensor", "event"}
    before = {e: hass.states.get(e).state for e in entities}  # type: ignore[union-attr]
    assert "unavailable" not in before.values()
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, False)
    await settle(hass)
    assert {e: hass.states.get(e).state for e in entities} == dict.fromkeys(entities, "unavailable")  # type: ignore[union-attr]
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, True)
    await settle(hass)
    assert {e: hass.states.get(e).state for e in entities} == before  # type: ignore[union-attr]


async def test_one_node_subscription_active_before_it_returns(
    hass: HomeAssistant, init_integration: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wait_active`: the broker acknowledged it (HA debounces SUBSCRIBE) when the call returns."""
    topic = "home/node/node1/mgmt/reply"
    acknowledged: list[str] = []
    real = mqtt.async_on_subscribe_done

    def watched(hass: HomeAssistant, topic: str, qos: int, done: Callable[[], None]) -> Callable[[], None]:
        def seen() -> None:
            acknowledged.append(topic)
            done()

        return real(hass, topic, qos, seen)

    monkeypatch.setattr(mqtt, "async_on_subscribe_done", watched)
    coordinator = init_integration.runtime_data.coordinator
    got: list[mqtt.ReceiveMessage] = []
    await coordinator.async_subscribe_node("node1", protocol.NODE_MGMT_REPLY, got.append, wait_active=True)
    assert acknowledged == [topic]
    async_fire_mqtt_message(hass, topic, b"abc 0 ok\n")
    await settle(hass)
    assert len(got) == 1


async def test_one_node_subscription_not_acknowledged(
    hass: HomeAssistant, init_integration: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No acknowledgement in time: TimeoutError, and nothing stays subscribed."""
    monkeypatch.setattr(coordinator_module, "SUBSCRIBE_TIMEOUT_S", 0.01)
    monkeypatch.setattr(mqtt, "async_on_subscribe_done", lambda *_args: lambda: None)
    coordinator = init_integration.runtime_data.coordinator
    got: list[mqtt.ReceiveMessage] = []
    with pytest.raises(TimeoutError):
        await coordinator.async_subscribe_node(
            "node1", protocol.NODE_MGMT_REPLY, got.append, wait_active=True
        )
    async_fire_mqtt_message(hass, "home/node/node1/mgmt/reply", b"abc 0 ok\n")
    await settle(hass)
    assert got == []
