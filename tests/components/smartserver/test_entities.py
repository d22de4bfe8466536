"""Snapshots of every entity, per platform: registry entries and states, of a server and of a node."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.smartserver.helpers import node_identifier, server_identifier
from script.harness.ha import RELAY_NODE, SERVER_ID

from .nodes_common import node_traffic


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "mqtt_client_closing")
@pytest.mark.parametrize(
    "platform", [Platform.BINARY_SENSOR, Platform.BUTTON, Platform.SENSOR, Platform.SWITCH]
)
async def test_entities(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    server_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    server_config_entry.add_to_hass(hass)
    with patch("custom_components.smartserver.PLATFORMS", [platform]):
        assert await hass.config_entries.async_setup(server_config_entry.entry_id)
        await hass.async_block_till_done()
    for topic, payload in (
        (f"home/node/{RELAY_NODE}/power", "ON"),
        (f"home/server/{SERVER_ID}/heartbeat", "ALIVE"),
        (f"home/server/{SERVER_ID}/state", "ONLINE"),
        (f"home/server/{SERVER_ID}/network", '{"link":true,"default_route":true,"reachable":false}'),
    ):
        async_fire_mqtt_message(hass, topic, payload, retain=True)
    await hass.async_block_till_done()
    await snapshot_platform(hass, entity_registry, snapshot, server_config_entry.entry_id)
    assert await hass.config_entries.async_unload(server_config_entry.entry_id)


async def test_server_device(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """A device per server, linked via its relay node, owned by the server's subentry."""
    device = device_registry.async_get_device_by_identifier(
        server_identifier(SERVER_ID), init_server.entry_id
    )
    assert device == snapshot
    relay = device_registry.async_get_device_by_identifier(node_identifier(RELAY_NODE), init_server.entry_id)
    assert relay is not None
    assert device is not None
    assert device.via_device_id == relay.id
    assert device.config_subentry_id == next(iter(init_server.subentries))


@pytest.mark.parametrize("platform", [Platform.SENSOR, Platform.BINARY_SENSOR, Platform.EVENT])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities_snapshot(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    freezer: FrozenDateTimeFactory,
    platform: Platform,
) -> None:
    freezer.move_to("2026-11-22 03:00:00+00:00")
    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.smartserver.PLATFORMS", [platform]):
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        await node_traffic(hass)
        await snapshot_platform(hass, entity_registry, snapshot, mock_config_entry.entry_id)
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


@pytest.mark.usefixtures("mqtt_client_closing")
async def test_rarely_needed_diagnostics_are_disabled_by_default(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    await node_traffic(hass)
    disabled = {
        entry.entity_id
        for entry in er.async_entries_for_config_entry(entity_registry, init_integration.entry_id)
        if entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    }
    assert disabled == {
        "sensor.node1_config_last_served",
        "sensor.node1_config_hash",
        "sensor.node1_suppressed_log_events",
    }
