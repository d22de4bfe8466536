"""A server agent's log lines (`<base>/log/<level>/<server_id>`): files, events, no node device."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_mqtt_message,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import CONF_LOG_BACKUPS, CONF_LOG_MAX_KB, EVENT_LOG
from custom_components.smartserver.helpers import server_identifier
from custom_components.smartserver.storage import Storage
from script.harness.ha import SERVER_ID, server_subentry

from .nodes_common import node_device, root, settle

SERVER_LOG = Path("servers") / SERVER_ID / f"{SERVER_ID}.log"


async def flush(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Let the lines be handled and written (the writer's batches are background tasks)."""
    await settle(hass)


def server_device(hass: HomeAssistant, entry: MockConfigEntry) -> dr.DeviceEntry:
    device = dr.async_get(hass).async_get_device_by_identifier(server_identifier(SERVER_ID), entry.entry_id)
    assert device is not None
    return device


async def test_agent_lines_go_to_files_and_events_not_a_node(
    hass: HomeAssistant, init_server: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    events = async_capture_events(hass, EVENT_LOG)
    async_fire_mqtt_message(hass, f"home/log/error/{SERVER_ID}", "power off failed: challenge")
    async_fire_mqtt_message(hass, "home/log/info/node1", "a real node")
    await flush(hass, init_server)

    assert node_device(hass, init_server, SERVER_ID) is None
    assert node_device(hass, init_server, "node1") is not None
    assert not (root(hass) / "clients" / SERVER_ID).exists()
    assert SERVER_ID not in (root(hass) / "device_names.yaml").read_text()
    assert (
        (root(hass) / SERVER_LOG).read_text().endswith(f"[ERROR] [{SERVER_ID}] power off failed: challenge\n")
    )
    assert f"[{SERVER_ID}] power off failed" in (root(hass) / "smartserver.log").read_text()

    device = server_device(hass, init_server)
    assert [e.data for e in events] == [
        {
            "node": SERVER_ID,
            "name": "NAS",
            "level": "error",
            "message": "power off failed: challenge",
            "device_id": device.id,
        }
    ]
    # the log entities are on the server's device and in its subentry; no node entities
    entries = {
        e.unique_id: e
        for e in er.async_entries_for_config_entry(entity_registry, init_server.entry_id)
        if e.unique_id.startswith(f"server_{SERVER_ID}_") or e.unique_id.startswith(f"node_{SERVER_ID}_")
    }
    logs = {f"server_{SERVER_ID}_{key}" for key in ("log", "last_log", "errors", "criticals", "suppressed")}
    assert logs <= set(entries)
    assert not any(uid.startswith(f"node_{SERVER_ID}_") for uid in entries)
    for uid in logs:
        assert entries[uid].device_id == device.id
        assert entries[uid].config_subentry_id == next(iter(init_server.subentries))
    assert (state := hass.states.get("sensor.nas_last_log")) is not None
    assert state.state == "power off failed: challenge"
    assert (state := hass.states.get("sensor.nas_errors_logged")) is not None
    assert state.state == "1"
    assert (state := hass.states.get("event.nas_log")) is not None
    assert state.attributes["event_type"] == "error"


async def test_phantom_node_device_removed_when_its_server_is_added(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Lines logged before the server existed made a node device; adding the server removes it."""
    async_fire_mqtt_message(hass, f"home/log/info/{SERVER_ID}", "started")
    await flush(hass, init_integration)
    phantom = node_device(hass, init_integration, SERVER_ID)
    assert phantom is not None
    assert er.async_entries_for_device(entity_registry, phantom.id)

    data = server_subentry()
    subentry = ConfigSubentry(
        data=MappingProxyType(data["data"]),
        subentry_type=data["subentry_type"],
        title=data["title"],
        unique_id=data["unique_id"],
    )
    hass.config_entries.async_add_subentry(init_integration, subentry)
    await settle(hass)

    assert node_device(hass, init_integration, SERVER_ID) is None
    assert not er.async_entries_for_device(entity_registry, phantom.id)
    async_fire_mqtt_message(hass, f"home/log/info/{SERVER_ID}", "again")
    await flush(hass, init_integration)
    assert node_device(hass, init_integration, SERVER_ID) is None
    assert (state := hass.states.get("sensor.nas_last_log")) is not None
    assert state.state == "again"
    assert (root(hass) / SERVER_LOG).read_text().endswith("again\n")


async def test_agent_log_rotates_like_a_node_log(
    hass: HomeAssistant,
    mqtt_client_closing: None,
    mqtt_mock: MqttMockHAClient,
    server_config_entry: MockConfigEntry,
) -> None:
    entry = server_config_entry
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, CONF_LOG_MAX_KB: 16, CONF_LOG_BACKUPS: 1}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    for i in range(500):
        async_fire_mqtt_message(hass, f"home/log/info/{SERVER_ID}", f"line {i:03d} " + "x" * 60)
    await flush(hass, entry)
    path = root(hass) / SERVER_LOG
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{SERVER_ID}.log", f"{SERVER_ID}.log.1"]
    assert all(p.stat().st_size <= 16 * 1024 for p in path.parent.iterdir())
    assert path.read_text().splitlines()[-1].endswith("line 499 " + "x" * 60)
    await hass.config_entries.async_unload(entry.entry_id)


def test_server_log_refuses_invalid_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refused server id"):
        Storage(tmp_path).server_log("../x")
