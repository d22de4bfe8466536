"""The server subentry flow: add, validate, show the agent's settings, reconfigure, rotate keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import (
    CONF_COMMAND_KEY,
    CONF_MAC,
    CONF_NODE_KEY,
    CONF_POWER_ON,
    CONF_REACH_HOST,
    CONF_REACH_PORT,
    CONF_RELAY_NODE,
    CONF_ROTATE_KEYS,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    CONF_WOL_ADDRESS,
    CONF_WOL_PORT,
    DOMAIN,
    SUBENTRY_SERVER,
)
from custom_components.smartserver.helpers import node_identifier, server_identifier
from script.harness.ha import COMMAND_KEY, NODE_KEY, RELAY_NODE, SERVER_ID

from .servers_common import (
    HEARTBEAT,
    POWER,
    POWER_SET,
    STATE,
    SYSTEM,
    elapse,
    issues,
    report,
    running,
    stopped,
    switch,
    verified,
)

NEW_SERVER = {
    CONF_NAME: "Backup box",
    CONF_SERVER_ID: "backup",
    CONF_RELAY_NODE: "relay2",
    CONF_START_GRACE: 200,
    CONF_STOP_GRACE: 90,
}


async def start_add(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return dict(result)


async def test_add_server(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    entry = init_server
    result = await start_add(hass, entry)
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], NEW_SERVER))
    # the settings to copy, before anything is saved
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "agent"
    placeholders = result["description_placeholders"]
    settings = placeholders["agent_settings"].splitlines()
    assert "SMARTSERVER_SERVER_ID=backup" in settings
    assert "SMARTSERVER_BASE_TOPIC=home" in settings
    assert any(line.startswith("SMARTSERVER_BROKER_HOST=") for line in settings)
    assert len(entry.subentries) == 1
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], {}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Backup box"
    await hass.async_block_till_done()

    subentry = next(s for s in entry.subentries.values() if s.unique_id == "backup")
    data = subentry.data
    assert {k: data[k] for k in NEW_SERVER} == NEW_SERVER
    # fresh keys, shown in the flow, different from each other and from other servers'
    assert len(data[CONF_COMMAND_KEY]) >= 40
    assert len(data[CONF_NODE_KEY]) >= 40
    assert data[CONF_COMMAND_KEY] != data[CONF_NODE_KEY]
    assert data[CONF_COMMAND_KEY] not in (COMMAND_KEY, NODE_KEY)
    assert f"SMARTSERVER_KEY={data[CONF_COMMAND_KEY]}" in settings
    assert placeholders["node_key"] == data[CONF_NODE_KEY]

    # the hub reloaded: the new server has its device (via its relay node) and entities
    switch = entity_registry.async_get("switch.backup_box_power")
    assert switch is not None
    assert switch.config_subentry_id == subentry.subentry_id
    device = device_registry.async_get_device_by_identifier(server_identifier("backup"), entry.entry_id)
    assert device is not None
    relay = device_registry.async_get_device_by_identifier(node_identifier("relay2"), entry.entry_id)
    assert relay is not None
    assert device.via_device_id == relay.id
    assert hass.states.get("switch.backup_box_power") is not None


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        (CONF_SERVER_ID, "../x", "invalid_id"),
        (CONF_SERVER_ID, "+", "invalid_id"),
        (CONF_SERVER_ID, "#", "invalid_id"),
        (CONF_SERVER_ID, "a/b", "invalid_id"),
        (CONF_SERVER_ID, "x" * 65, "invalid_id"),
        (CONF_SERVER_ID, SERVER_ID, "server_id_in_use"),
        (CONF_RELAY_NODE, "re lay", "invalid_id"),
        (CONF_RELAY_NODE, RELAY_NODE, "relay_node_in_use"),
        (CONF_NAME, "  ", "name_required"),
        (CONF_MAC, "02:00:5e:10:00", "invalid_mac"),
        (CONF_MAC, "02:00:5e:10:00:zz", "invalid_mac"),
        (CONF_WOL_ADDRESS, "192.168.1.256", "invalid_address"),
        (CONF_WOL_ADDRESS, "broadcast", "invalid_address"),
        (CONF_REACH_HOST, "nas lan", "invalid_host"),
        (CONF_REACH_HOST, "nas/lan", "invalid_host"),
    ],
)
async def test_add_server_rejects(
    hass: HomeAssistant, init_server: MockConfigEntry, field: str, value: str, error: str
) -> None:
    result = await start_add(hass, init_server)
    wol = {CONF_POWER_ON: "wol_node", CONF_MAC: "02:00:5E:10:00:01"}
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**NEW_SERVER, **wol, field: value}
        )
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {field: error}
    # the form recovers
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], NEW_SERVER))
    assert result["step_id"] == "agent"


@pytest.mark.parametrize("method", ["wol_node", "wol_ha"])
async def test_add_server_with_wol(hass: HomeAssistant, init_server: MockConfigEntry, method: str) -> None:
    result = await start_add(hass, init_server)
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {
                **NEW_SERVER,
                CONF_POWER_ON: method,
                CONF_MAC: "02-00-5e-10-00-01",
                CONF_WOL_ADDRESS: "127.0.0.1",
            },
        )
    )
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], {}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    data = next(s for s in init_server.subentries.values() if s.unique_id == "backup").data
    # the MAC normalised; the port its default
    assert {k: data[k] for k in (CONF_POWER_ON, CONF_MAC, CONF_WOL_ADDRESS, CONF_WOL_PORT)} == {
        CONF_POWER_ON: method,
        CONF_MAC: "02:00:5E:10:00:01",
        CONF_WOL_ADDRESS: "127.0.0.1",
        CONF_WOL_PORT: 9,
    }


async def test_a_relay_or_no_power_on_needs_no_mac(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    result = await start_add(hass, init_server)
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**NEW_SERVER, CONF_POWER_ON: "none", CONF_MAC: "not one"}
        )
    )
    assert result["step_id"] == "agent"
    await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    data = next(s for s in init_server.subentries.values() if s.unique_id == "backup").data
    assert data[CONF_POWER_ON] == "none"
    assert CONF_MAC not in data


async def test_reachability_check_settings(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    result = await start_add(hass, init_server)
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**NEW_SERVER, CONF_REACH_HOST: " nas.lan "}
        )
    )
    assert result["errors"] == {CONF_REACH_PORT: "reach_port_required"}
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**NEW_SERVER, CONF_REACH_HOST: " nas.lan ", CONF_REACH_PORT: 22}
        )
    )
    await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    data = next(s for s in init_server.subentries.values() if s.unique_id == "backup").data
    assert (data[CONF_REACH_HOST], data[CONF_REACH_PORT]) == ("nas.lan", 22)


async def reconfigure(hass: HomeAssistant, entry: MockConfigEntry, rotate: bool) -> dict[str, Any]:
    subentry_id = next(iter(entry.subentries))
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_NAME: "Big NAS",
            CONF_RELAY_NODE: RELAY_NODE,
            CONF_START_GRACE: 150,
            CONF_STOP_GRACE: 70,
            CONF_ROTATE_KEYS: rotate,
        },
    )
    assert result["step_id"] == "agent"
    shown = dict(result["description_placeholders"] or {})
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    return shown


async def test_reconfigure_keeps_keys_and_shows_them(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    shown = await reconfigure(hass, init_server, rotate=False)
    subentry = next(iter(init_server.subentries.values()))
    assert subentry.title == "Big NAS"
    assert subentry.data[CONF_SERVER_ID] == SERVER_ID
    assert subentry.data[CONF_START_GRACE] == 150
    assert subentry.data[CONF_COMMAND_KEY] == COMMAND_KEY
    assert subentry.data[CONF_NODE_KEY] == NODE_KEY
    assert f"SMARTSERVER_KEY={COMMAND_KEY}" in shown["agent_settings"]
    assert shown["node_key"] == NODE_KEY
    # reloaded with the new settings: the press is signed with the same node key, and
    # no response within the new start grace raises an issue with the new name
    await stopped(hass)
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["PRESS"]
    await elapse(hass, freezer, 149)
    assert issues(issue_registry) == set()
    await elapse(hass, freezer, 2)
    issue = issue_registry.async_get_issue(DOMAIN, f"{SERVER_ID}_start_no_response")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["name"] == "Big NAS"
    assert issue.translation_placeholders["grace"] == "150"


async def test_reconfigure_rotates_keys(
    hass: HomeAssistant, init_server: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    shown = await reconfigure(hass, init_server, rotate=True)
    subentry = next(iter(init_server.subentries.values()))
    new_command, new_node = subentry.data[CONF_COMMAND_KEY], subentry.data[CONF_NODE_KEY]
    assert new_command not in (COMMAND_KEY, NODE_KEY)
    assert new_node not in (COMMAND_KEY, NODE_KEY, new_command)
    assert f"SMARTSERVER_KEY={new_command}" in shown["agent_settings"]
    assert shown["node_key"] == new_node
    # the reloaded server signs with the new keys
    await running(hass)
    await switch(hass, "turn_off")
    assert verified(mqtt_mock, SYSTEM, new_command, SERVER_ID) == ["SHUTDOWN"]
    assert await report(hass, (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD"), (POWER, "OFF")) == "off"
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, new_node, RELAY_NODE) == ["PRESS"]


async def test_reconfigure_to_wol_from_the_node(
    hass: HomeAssistant, init_server: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    subentry = next(iter(init_server.subentries.values()))
    assert CONF_POWER_ON not in subentry.data  # a subentry from before the methods: the relay
    result = await hass.config_entries.subentries.async_init(
        (init_server.entry_id, SUBENTRY_SERVER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    settings = {
        CONF_NAME: "NAS",
        CONF_RELAY_NODE: RELAY_NODE,
        CONF_START_GRACE: 150,
        CONF_STOP_GRACE: 70,
        CONF_ROTATE_KEYS: False,
        CONF_POWER_ON: "wol_node",
        CONF_MAC: "0200.5e10.0001",
    }
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], settings)
    assert result["errors"] == {CONF_MAC: "invalid_mac"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**settings, CONF_MAC: "02005e100001", CONF_WOL_PORT: 7}
    )
    await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    await stopped(hass)
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["WOL"]


async def test_reconfigure_rejects_a_taken_relay(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    result = await start_add(hass, init_server)
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], NEW_SERVER))
    await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    nas = next(s for s in init_server.subentries.values() if s.unique_id == SERVER_ID)
    result = dict(
        await hass.config_entries.subentries.async_init(
            (init_server.entry_id, SUBENTRY_SERVER),
            context={"source": SOURCE_RECONFIGURE, "subentry_id": nas.subentry_id},
        )
    )
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {
                CONF_NAME: "NAS",
                CONF_RELAY_NODE: "relay2",
                CONF_START_GRACE: 150,
                CONF_STOP_GRACE: 70,
                CONF_ROTATE_KEYS: False,
            },
        )
    )
    assert result["errors"] == {CONF_RELAY_NODE: "relay_node_in_use"}


async def test_removing_a_server_removes_its_device_and_entities(
    hass: HomeAssistant,
    init_server: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    issue_registry: ir.IssueRegistry,
) -> None:
    subentry_id = next(iter(init_server.subentries))
    assert entity_registry.async_get("switch.nas_power") is not None
    # an issue of the server goes with it
    async_fire_mqtt_message(hass, f"home/server/{SERVER_ID}/heartbeat", "ALIVE", retain=True)
    async_fire_mqtt_message(hass, f"home/server/{SERVER_ID}/heartbeat", "DEAD")
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, f"{SERVER_ID}_agent_lost") is not None
    assert hass.config_entries.async_remove_subentry(init_server, subentry_id)
    await hass.async_block_till_done()
    assert entity_registry.async_get("switch.nas_power") is None
    assert hass.states.get("switch.nas_power") is None
    identifier = server_identifier(SERVER_ID)
    assert device_registry.async_get_device_by_identifier(identifier, init_server.entry_id) is None
    assert issue_registry.async_get_issue(DOMAIN, f"{SERVER_ID}_agent_lost") is None
    # the removed server is followed no more: its agent's loss raises nothing
    async_fire_mqtt_message(hass, f"home/server/{SERVER_ID}/heartbeat", "ALIVE")
    async_fire_mqtt_message(hass, f"home/server/{SERVER_ID}/heartbeat", "DEAD")
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, f"{SERVER_ID}_agent_lost") is None


async def test_last_step_says_what_to_do_next(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    entry = init_server
    result = await start_add(hass, entry)
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], NEW_SERVER))
    placeholders = result["description_placeholders"]
    # links are placeholders (hassfest allows no URLs in strings) to the guides that exist
    for key, page in (("agent_docs", "agent.md"), ("firmware_docs", "firmware.md")):
        assert placeholders[key].startswith("https://github.com/")
        assert placeholders[key].split("/docs/")[1].split("#")[0] == page
        assert (Path(__file__).parents[3] / "docs" / page).is_file()
    # short lines copy cleanly out of the dialog: nothing in them is cut off
    assert max(len(line) for line in placeholders["agent_settings"].splitlines()) <= 64
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], {}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["description_placeholders"] == {"name": "Backup box", "relay_node": "relay2"}
    await hass.async_block_till_done()


async def test_relay_node_is_picked_from_known_nodes(
    hass: HomeAssistant, init_server: MockConfigEntry
) -> None:
    """The nodes SmartServer heard from are offered; a node not flashed yet can be typed."""
    async_fire_mqtt_message(hass, "home/log/info/garage", "booted")
    await hass.async_block_till_done()
    result = await start_add(hass, init_server)
    schema = result["data_schema"].schema
    (field,) = (key for key in schema if key == CONF_RELAY_NODE)
    config = schema[field].config
    assert config["options"] == sorted(["garage", RELAY_NODE])
    assert config["custom_value"] is True
    typed = {**NEW_SERVER, CONF_RELAY_NODE: "not-flashed-yet"}
    result = dict(await hass.config_entries.subentries.async_configure(result["flow_id"], typed))
    assert result["step_id"] == "agent"
    assert result["description_placeholders"]["relay_node"] == "not-flashed-yet"
