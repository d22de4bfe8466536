"""Sensor platform: node counters resume after a restart."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    mock_restore_cache_with_extra_data,
)

from custom_components.smartserver.const import DOMAIN
from custom_components.smartserver.helpers import node_identifier

from .nodes_common import written


@pytest.mark.usefixtures("mqtt_mock", "mqtt_client_closing")
async def test_counters_restored(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    mock_config_entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=mock_config_entry.entry_id, identifiers={node_identifier("node1")}, name="node1"
    )
    er.async_get(hass).async_get_or_create(
        "sensor",
        DOMAIN,
        "node_node1_errors",
        config_entry=mock_config_entry,
        device_id=device.id,
        suggested_object_id="node1_errors_logged",
    )
    mock_restore_cache_with_extra_data(
        hass,
        [(State("sensor.node1_errors_logged", "7"), {"native_value": 7, "native_unit_of_measurement": None})],
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    async_fire_mqtt_message(hass, "home/log/error/node1", "one more")
    await written(hass)
    assert hass.states.get("sensor.node1_errors_logged").state == "8"  # type: ignore[union-attr]
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


@pytest.mark.usefixtures("mqtt_client_closing")
async def test_last_log_survives_a_reload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Adding a server or changing an option reloads the entry: the last line stays."""
    async_fire_mqtt_message(hass, "home/log/info/node1", "booted")
    await written(hass)
    assert hass.states.get("sensor.node1_last_log").state == "booted"  # type: ignore[union-attr]
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get("sensor.node1_last_log").state == "booted"  # type: ignore[union-attr]
    # a new line replaces it as before
    async_fire_mqtt_message(hass, "home/log/info/node1", "running")
    await written(hass)
    assert hass.states.get("sensor.node1_last_log").state == "running"  # type: ignore[union-attr]
