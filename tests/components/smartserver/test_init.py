"""Setup and unload of the hub entry; removing a stale node's device."""

from __future__ import annotations

from collections.abc import Iterable
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient, WebSocketGenerator

from custom_components.smartserver.coordinator import SmartServerData

from .nodes_common import node_device, settle


async def test_setup_and_unload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    entry = init_integration
    assert entry.state == ConfigEntryState.LOADED
    assert isinstance(entry.runtime_data, SmartServerData)
    assert entry.runtime_data.base_topic == "home"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_mqtt_missing_retries(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """Without an MQTT client the entry waits and retries instead of failing for good."""
    mock_config_entry.add_to_hass(hass)
    with patch("homeassistant.components.mqtt.async_wait_for_mqtt_client", return_value=False) as wait:
        assert not await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    wait.assert_called_once()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert mock_config_entry.reason == "The MQTT integration is not available yet"


async def test_stale_device_removal(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
    freezer: FrozenDateTimeFactory,
) -> None:
    assert await async_setup_component(hass, "config", {})
    async_fire_mqtt_message(hass, "home/node/node1/status", "ONLINE")
    async_fire_mqtt_message(hass, "home/log/info/node2", "hi")
    await settle(hass)
    client = await hass_ws_client(hass)

    async def remove(node: str) -> bool:
        device = node_device(hass, init_integration, node)
        assert device is not None
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": init_integration.entry_id,
                "device_id": device.id,
            }
        )
        return bool((await client.receive_json())["success"])

    assert not await remove("node1")  # online
    assert not await remove("node2")  # heard from just now
    async_fire_mqtt_message(hass, "home/node/node1/status", "OFFLINE")
    await settle(hass)
    freezer.tick(3600)  # an hour of silence
    assert await remove("node1")
    assert await remove("node2")
    await settle(hass)
    assert node_device(hass, init_integration, "node1") is None
    assert hass.states.get("sensor.node1_last_log") is None
    # a node that comes back is a new contact
    async_fire_mqtt_message(hass, "home/log/info/node1", "back")
    await settle(hass)
    assert node_device(hass, init_integration, "node1") is not None


async def test_node_heard_before_the_platforms_gets_its_entities(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
    """`status` is subscribed before the platforms: a node heard meanwhile is among those they add."""
    forward = hass.config_entries.async_forward_entry_setups

    async def status_first(entry: ConfigEntry, platforms: Iterable[Platform | str]) -> None:
        async_fire_mqtt_message(hass, "home/node/early/status", "ONLINE")
        await forward(entry, platforms)

    mock_config_entry.add_to_hass(hass)
    with patch.object(hass.config_entries, "async_forward_entry_setups", status_first):
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await settle(hass)
    assert node_device(hass, mock_config_entry, "early") is not None
    state = hass.states.get("binary_sensor.early_status")
    assert state is not None
    assert state.state == "on"
    assert hass.states.get("sensor.early_last_log") is not None
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
