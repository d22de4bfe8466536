"""A server without a node: woken by Home Assistant or off only; its evidence: the agent, reachability."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import (
    CONF_MAC,
    CONF_POWER_ON,
    CONF_RELAY_NODE,
    CONF_ROTATE_KEYS,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    CONF_WOL_ADDRESS,
    CONF_WOL_PORT,
    SUBENTRY_SERVER,
)
from custom_components.smartserver.diagnostics import async_get_config_entry_diagnostics
from custom_components.smartserver.helpers import node_id_of_device, server_identifier
from custom_components.smartserver.power import Action, PowerConfig, PowerMachine, PowerOn, Refusal, Refuse
from script.harness.ha import COMMAND_KEY, RELAY_NODE, SERVER_ID, server_hub

from .servers_common import HEARTBEAT, STATE, SYSTEM, issues, power_state, report, switch, verified

MAC = "02:00:5E:10:00:01"
BACKUP = {
    CONF_NAME: "Backup box",
    CONF_SERVER_ID: "backup",
    CONF_START_GRACE: 200,
    CONF_STOP_GRACE: 90,
}


@pytest.fixture
def server_config_entry(listener: socket.socket) -> MockConfigEntry:
    """The hub with NAS, which has no node: Home Assistant wakes it (to the listener)."""
    port = listener.getsockname()[1]
    return server_hub(
        relay_node=None,
        **{CONF_POWER_ON: "wol_ha", CONF_MAC: MAC, CONF_WOL_ADDRESS: "127.0.0.1", CONF_WOL_PORT: port},
    )


def node_devices(device_registry: dr.DeviceRegistry, entry: MockConfigEntry) -> list[str | None]:
    return [
        node_id_of_device(device)
        for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        if node_id_of_device(device) is not None
    ]


async def test_server_without_a_node(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    listener: socket.socket,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    issue_registry: ir.IssueRegistry,
) -> None:
    # its device stands alone: no node device is made for it
    device = device_registry.async_get_device_by_identifier(
        server_identifier(SERVER_ID), init_server.entry_id
    )
    assert device is not None
    assert device.via_device_id is None
    assert node_devices(device_registry, init_server) == []
    # the refresh goes to the agent only
    topics = [call.args[0] for call in mqtt_mock.async_publish.call_args_list]
    assert f"home/server/{SERVER_ID}/refresh" in topics
    assert not [topic for topic in topics if topic.startswith("home/node/")]
    # no force off: there is no button to hold
    assert entity_registry.async_get("button.nas_reboot") is not None
    assert entity_registry.async_get("button.nas_force_off") is None

    # the agent is the evidence: on, then a clean shutdown to off
    assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE")) == "on"
    await switch(hass, "turn_off")
    assert verified(mqtt_mock, SYSTEM, COMMAND_KEY, SERVER_ID) == ["SHUTDOWN"]
    assert await report(hass, (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD")) == "off"
    # woken by Home Assistant; nothing is sent to any node
    await switch(hass, "turn_on")
    packet, _sender = listener.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16
    assert not [c for c in mqtt_mock.async_publish.call_args_list if c.args[0].startswith("home/node/")]
    assert power_state(hass) == "off"
    assert await report(hass, (HEARTBEAT, "ALIVE")) == "starting"
    assert await report(hass, (STATE, "ONLINE")) == "on"
    assert issues(issue_registry) == set()

    diagnostics = await async_get_config_entry_diagnostics(hass, init_server)
    (server,) = diagnostics["servers"]
    assert CONF_RELAY_NODE not in server["data"]
    assert server["runtime"]["relay_node_status"] is None
    assert server["runtime"]["state"] == "on"


async def test_force_off_needs_a_node() -> None:
    machine = PowerMachine(PowerConfig("nas", None, 100, 100, power_on=PowerOn.WOL_HA))
    assert machine.decide(Action.FORCE_OFF) == Refuse(Refusal.NO_RELAY_NODE)


async def start_add(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER), context={"source": SOURCE_USER}
    )
    return str(result["flow_id"])


@pytest.mark.parametrize("method", ["wol_ha", "none"])
async def test_add_a_server_without_a_node(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    method: str,
) -> None:
    flow_id = await start_add(hass, init_server)
    wol = {CONF_MAC: MAC} if method == "wol_ha" else {}
    shown = await hass.config_entries.subentries.async_configure(
        flow_id, {**BACKUP, CONF_POWER_ON: method, **wol}
    )
    # no node: the last step shows the agent's settings only
    assert shown["step_id"] == "agent_only"
    assert "node_key" not in (shown["description_placeholders"] or {})
    result = dict(await hass.config_entries.subentries.async_configure(flow_id, {}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["description"] == "agent_only"
    await hass.async_block_till_done()
    data = next(s for s in init_server.subentries.values() if s.unique_id == "backup").data
    assert CONF_RELAY_NODE not in data
    assert data[CONF_POWER_ON] == method
    device = device_registry.async_get_device_by_identifier(server_identifier("backup"), init_server.entry_id)
    assert device is not None
    assert device.via_device_id is None
    assert hass.states.get("switch.backup_box_power") is not None
    assert entity_registry.async_get("button.backup_box_force_off") is None


@pytest.mark.parametrize("method", ["relay", "wol_node"])
async def test_node_methods_need_a_node(
    hass: HomeAssistant, init_server: MockConfigEntry, method: str
) -> None:
    flow_id = await start_add(hass, init_server)
    settings: dict[str, Any] = {**BACKUP, CONF_POWER_ON: method, CONF_MAC: MAC}
    result = dict(await hass.config_entries.subentries.async_configure(flow_id, settings))
    assert result["errors"] == {CONF_RELAY_NODE: "relay_node_required"}
    result = dict(
        await hass.config_entries.subentries.async_configure(flow_id, {**settings, CONF_RELAY_NODE: "  "})
    )
    assert result["errors"] == {CONF_RELAY_NODE: "relay_node_required"}
    result = dict(
        await hass.config_entries.subentries.async_configure(flow_id, {**settings, CONF_RELAY_NODE: "relay2"})
    )
    assert result["step_id"] == "agent"


@pytest.mark.parametrize("server_config_entry", [server_hub()])
async def test_reconfigure_drops_the_node(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    device_registry: dr.DeviceRegistry,
) -> None:
    subentry = next(iter(init_server.subentries.values()))
    assert subentry.data[CONF_RELAY_NODE] == RELAY_NODE
    result = await hass.config_entries.subentries.async_init(
        (init_server.entry_id, SUBENTRY_SERVER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    settings = {
        CONF_NAME: "NAS",
        CONF_START_GRACE: 150,
        CONF_STOP_GRACE: 70,
        CONF_ROTATE_KEYS: False,
        CONF_POWER_ON: "none",
    }
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], settings)
    assert result["step_id"] == "agent_only"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    subentry = init_server.subentries[subentry.subentry_id]
    assert CONF_RELAY_NODE not in subentry.data
    # reloaded without a node: the server's device links to none, turning on is refused
    device = device_registry.async_get_device_by_identifier(
        server_identifier(SERVER_ID), init_server.entry_id
    )
    assert device is not None
    assert device.via_device_id is None
    assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE")) == "on"
    assert await report(hass, (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD")) == "off"
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "no_power_on"
