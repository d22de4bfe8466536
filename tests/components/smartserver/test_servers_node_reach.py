"""Reachability checked by the server's node, served its settings by HA; the check interval."""

from __future__ import annotations

import json
import socket
from collections.abc import Generator
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_NAME, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import InvalidData
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import (
    CONF_MAC,
    CONF_POWER_ON,
    CONF_REACH_BY,
    CONF_REACH_HOST,
    CONF_REACH_INTERVAL,
    CONF_REACH_PORT,
    CONF_RELAY_NODE,
    CONF_SERVER_ID,
    SUBENTRY_SERVER,
)
from script.harness.ha import RELAY_NODE, server_hub

from .nodes_common import answers, request
from .servers_common import HEARTBEAT, STATE, elapse, fire, power_state, report

REACHABLE = "binary_sensor.nas_reachable"
REACH = f"home/node/{RELAY_NODE}/reach"
STATUS = f"home/node/{RELAY_NODE}/status"


@pytest.fixture
def listening(socket_enabled: None) -> Generator[int]:
    """A TCP listener on loopback for the whole test: a check by HA would get an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def node_checks(port: int, **extra: Any) -> MockConfigEntry:
    return server_hub(**{CONF_REACH_HOST: "127.0.0.1", CONF_REACH_PORT: port, CONF_REACH_BY: "node", **extra})


@pytest.fixture
def server_config_entry(listening: int) -> MockConfigEntry:
    """NAS, whose node checks its port every 20 s and wakes it by Wake-on-LAN."""
    return node_checks(
        listening, **{CONF_REACH_INTERVAL: 20, CONF_POWER_ON: "wol_node", CONF_MAC: "02:00:5E:10:00:01"}
    )


def reachable(hass: HomeAssistant) -> str:
    state = hass.states.get(REACHABLE)
    assert state is not None
    return state.state


@pytest.mark.usefixtures("init_server")
async def test_the_node_checks(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    # HA does not check itself (its check would get an answer from the listener)
    await elapse(hass, freezer, 61)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert reachable(hass) == STATE_UNKNOWN
    # the node's answer is evidence exactly like HA's own: on, before the agent says anything
    assert await report(hass, (REACH, "ON")) == "on"
    assert reachable(hass) == STATE_ON
    # an agent that crashes does not make an answering server off
    assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE"), (HEARTBEAT, "DEAD")) == "on"
    # no answer proves nothing; an unknown payload is ignored
    assert await report(hass, (REACH, "MAYBE")) == "on"
    assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE"), (REACH, "OFF")) == "on"
    assert reachable(hass) == STATE_OFF
    assert await report(hass, (REACH, "ON")) == "on"
    # the node goes offline: its last answer no longer holds
    assert await report(hass, (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD")) == "off"
    fire(hass, STATUS, "OFFLINE")
    await hass.async_block_till_done()
    assert reachable(hass) == STATE_UNKNOWN


@pytest.mark.usefixtures("init_server")
async def test_the_node_is_served_its_sections(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, listening: int
) -> None:
    await request(hass, RELAY_NODE)
    ((_topic, payload),) = answers(mqtt_mock)
    served = json.loads(payload)
    assert served["reach"] == {"host": "127.0.0.1", "port": listening, "interval_s": 20, "timeout_ms": 5000}
    assert served["wol"] == {}
    # chunked: the served sections are components like the files' own
    await request(hass, RELAY_NODE, '["1.0.0", "esp32", 0]')
    assert {topic.rsplit("/", 1)[1] for topic, _p in answers(mqtt_mock)[1:]} >= {"reach", "wol"}


@pytest.mark.parametrize("server_config_entry", [server_hub()])
@pytest.mark.usefixtures("init_server")
async def test_a_relay_node_alone_is_served_nothing_more(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    await request(hass, RELAY_NODE)
    ((_topic, payload),) = answers(mqtt_mock)
    assert json.loads(payload) == {"_order": []}
    # nobody asked the node to check: its report is ignored
    assert await report(hass, (REACH, "ON")) == STATE_UNKNOWN


@pytest.fixture
def ha_checks(listening: int) -> MockConfigEntry:
    return server_hub(**{CONF_REACH_HOST: "127.0.0.1", CONF_REACH_PORT: listening, CONF_REACH_INTERVAL: 10})


async def test_ha_checks_at_its_interval(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    freezer: FrozenDateTimeFactory,
    ha_checks: MockConfigEntry,
) -> None:
    ha_checks.add_to_hass(hass)
    assert await hass.config_entries.async_setup(ha_checks.entry_id)
    await hass.async_block_till_done()
    await elapse(hass, freezer, 11)  # the default would be 30 s
    await hass.async_block_till_done(wait_background_tasks=True)
    assert reachable(hass) == STATE_ON
    assert power_state(hass) == "on"
    await hass.config_entries.async_unload(ha_checks.entry_id)
    await hass.async_block_till_done()


async def add(hass: HomeAssistant, entry: MockConfigEntry, settings: dict[str, Any]) -> dict[str, Any]:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER), context={"source": SOURCE_USER}
    )
    base = {CONF_NAME: "Backup", CONF_SERVER_ID: "backup", CONF_REACH_PORT: 22, CONF_REACH_BY: "node"}
    return dict(await hass.config_entries.subentries.async_configure(result["flow_id"], {**base, **settings}))


@pytest.mark.parametrize(
    ("settings", "errors"),
    [
        (
            {CONF_REACH_HOST: "192.168.1.10", CONF_POWER_ON: "wol_ha", CONF_MAC: "02:00:5E:10:00:01"},
            {CONF_RELAY_NODE: "relay_node_required"},
        ),
        ({CONF_REACH_HOST: "nas.lan", CONF_RELAY_NODE: "relay2"}, {CONF_REACH_HOST: "reach_host_ipv4"}),
    ],
)
@pytest.mark.usefixtures("init_server")
async def test_the_node_needs_a_node_and_an_address(
    hass: HomeAssistant, init_server: MockConfigEntry, settings: dict[str, Any], errors: dict[str, str]
) -> None:
    result = await add(hass, init_server, settings)
    assert result["errors"] == errors


@pytest.mark.parametrize("interval", [4, 3601])
async def test_interval_bounds(hass: HomeAssistant, init_server: MockConfigEntry, interval: int) -> None:
    with pytest.raises(InvalidData):
        await add(
            hass,
            init_server,
            {CONF_RELAY_NODE: "relay2", CONF_REACH_HOST: "192.168.1.10", CONF_REACH_INTERVAL: interval},
        )


async def test_settings_stored(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    result = await add(
        hass,
        init_server,
        {CONF_RELAY_NODE: "relay2", CONF_REACH_HOST: " 192.168.1.10 ", CONF_REACH_INTERVAL: 45},
    )
    assert result["step_id"] == "agent"
    await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    data = next(s for s in init_server.subentries.values() if s.unique_id == "backup").data
    assert {k: data[k] for k in (CONF_REACH_HOST, CONF_REACH_PORT, CONF_REACH_BY, CONF_REACH_INTERVAL)} == {
        CONF_REACH_HOST: "192.168.1.10",
        CONF_REACH_PORT: 22,
        CONF_REACH_BY: "node",
        CONF_REACH_INTERVAL: 45,
    }
