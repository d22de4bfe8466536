"""Event platform and the `smartserver_log` bus event: levels, unknown levels."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_mqtt_message,
)

from custom_components.smartserver.const import CONF_BASE_TOPIC, CONF_EVENT_LEVEL, EVENT_LOG

from .nodes_common import node_device, written


async def test_bus_event_event_entity_and_levels(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    # captured in the event loop, in order (a plain listener would run in the executor)
    events = async_capture_events(hass, EVENT_LOG)
    for level in ["debug", "info", "warn", "error", "critical", "Fatal"]:
        async_fire_mqtt_message(hass, f"home/log/{level}/node1", f"a {level} line")
    await written(hass)
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    # default lowest event level: warning; an unknown level ranks as info
    assert [e.data for e in events] == [
        {"node": "node1", "name": "node1", "level": lvl, "message": f"a {raw} line", "device_id": device.id}
        for lvl, raw in [("warning", "warn"), ("error", "error"), ("critical", "critical")]
    ]
    state = hass.states.get("event.node1_log")
    assert state is not None
    assert state.attributes["event_type"] == "critical"
    assert state.attributes["message"] == "a critical line"
    assert hass.states.get("sensor.node1_last_log").state == "a Fatal line"  # type: ignore[union-attr]
    assert hass.states.get("sensor.node1_errors_logged").state == "1"  # type: ignore[union-attr]
    assert hass.states.get("sensor.node1_critical_messages_logged").state == "1"  # type: ignore[union-attr]


@pytest.mark.usefixtures("mqtt_mock", "mqtt_client_closing")
async def test_unknown_level_event_type(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    mock_config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        mock_config_entry, options={CONF_BASE_TOPIC: "home", CONF_EVENT_LEVEL: "debug"}
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    async_fire_mqtt_message(hass, "home/log/Fatal/node1", "odd")
    await written(hass)
    state = hass.states.get("event.node1_log")
    assert state is not None
    assert state.attributes["event_type"] == "unknown"
    assert state.attributes["level"] == "Fatal"
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
