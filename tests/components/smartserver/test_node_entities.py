"""Node devices and entities: snapshots, status, events, triggers, refresh, removal, diagnostics."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.mqtt import MQTT_CONNECTION_STATE
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, ServiceCall, State
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_mqtt_message,
    async_fire_time_changed,
    async_get_device_automations,
    async_mock_service,
    mock_restore_cache_with_extra_data,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    MqttMockHAClient,
    WebSocketGenerator,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.smartserver import protocol
from custom_components.smartserver.const import CONF_BASE_TOPIC, CONF_EVENT_LEVEL, DOMAIN, EVENT_LOG
from custom_components.smartserver.helpers import node_identifier

from .nodes_common import component, node_device, published, request, settle, wait_until


async def written(hass: HomeAssistant) -> None:
    """Handle what was received (log lines are handled once per loop turn), then the rate limit."""
    await settle(hass)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await settle(hass)


async def _node_traffic(hass: HomeAssistant) -> None:
    """A node that asked for its config, logged and reported its status."""
    component(hass, "node1", "led.json", {"pin": 2})
    await request(hass, "node1")
    async_fire_mqtt_message(hass, "home/node/node1/status", "ONLINE", retain=True)
    for level, text in [("info", "booted"), ("error", "sensor missing"), ("critical", "brownout")]:
        async_fire_mqtt_message(hass, f"home/log/{level}/node1", text)
    await written(hass)


@pytest.mark.parametrize("platform", [Platform.SENSOR, Platform.BINARY_SENSOR, Platform.EVENT])
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
        await _node_traffic(hass)
        await snapshot_platform(hass, entity_registry, snapshot, mock_config_entry.entry_id)
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


async def test_diagnostics_snapshot(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    await _node_traffic(hass)
    served = props("config_served_at")
    result = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert result == snapshot(exclude=served)
    assert result["nodes"]["nodes"]["node1"]["config_served_at"] > 0
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    result = await get_diagnostics_for_device(hass, hass_client, init_integration, device)
    assert result == snapshot(name="device", exclude=served)
    assert "brownout" not in str(result)


async def test_status_binary_sensor(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    entity = "binary_sensor.node1_status"
    async_fire_mqtt_message(hass, "home/node/node1/status", "ONLINE", retain=True)
    await written(hass)
    assert hass.states.get(entity).state == "on"  # type: ignore[union-attr]
    async_fire_mqtt_message(hass, "home/node/node1/status", "OFFLINE")
    await written(hass)
    assert hass.states.get(entity).state == "off"  # type: ignore[union-attr]
    async_fire_mqtt_message(hass, "home/node/node1/status", b"\xffgarbage")
    await written(hass)
    assert hass.states.get(entity).state == "off"  # type: ignore[union-attr]
    assert "Ignored status" in caplog.text
    async_fire_mqtt_message(hass, "home/node/node1/status", "")  # retained status cleared
    await written(hass)
    assert hass.states.get(entity).state == "unknown"  # type: ignore[union-attr]
    # other leaves are not a status
    async_fire_mqtt_message(hass, "home/node/node2/power", "ON")
    await settle(hass)
    assert hass.states.get("binary_sensor.node2_status") is None


async def test_unavailable_while_mqtt_is_disconnected(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    await _node_traffic(hass)
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


async def test_unknown_level_event_type(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
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


async def test_device_trigger_critical(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    async_fire_mqtt_message(hass, "home/log/info/node1", "hello")
    await settle(hass)
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert sorted(t["type"] for t in triggers if t["domain"] == DOMAIN) == [
        "logged_critical",
        "logged_error",
        "logged_warning",
    ]

    calls: list[ServiceCall] = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "trigger": {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device.id,
                        "type": "logged_critical",
                    },
                    "action": {
                        "service": "test.automation",
                        "data_template": {"message": "{{ trigger.event.data.message }}"},
                    },
                }
            ]
        },
    )
    async_fire_mqtt_message(hass, "home/log/error/node1", "only an error")
    async_fire_mqtt_message(hass, "home/log/critical/node2", "another node")
    async_fire_mqtt_message(hass, "home/log/CRITICAL/node1", "on fire")
    await settle(hass)
    assert [c.data["message"] for c in calls] == ["on fire"]


async def test_invalid_device_trigger_rejected(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A debug trigger does not exist while debug lines do not become events."""
    async_fire_mqtt_message(hass, "home/log/info/node1", "hello")
    await settle(hass)
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    from homeassistant.components.device_automation.exceptions import InvalidDeviceAutomationConfig

    from custom_components.smartserver import device_trigger

    config = {"platform": "device", "domain": DOMAIN, "device_id": device.id, "type": "logged_debug"}
    with pytest.raises(InvalidDeviceAutomationConfig):
        await device_trigger.async_validate_trigger_config(hass, config)


async def test_counters_restored(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
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


async def test_refresh_after_start_and_reconnect(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
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
