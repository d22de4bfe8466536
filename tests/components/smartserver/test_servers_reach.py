"""Reachability: HA checks a TCP port on the server (a listener the test opens and closes on loopback)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver.const import CONF_REACH_HOST, CONF_REACH_PORT
from script.harness.ha import server_hub
from script.harness.procs import tcp_listener

from .servers_common import HEARTBEAT, STATE, elapse, issues, power_state, report

REACHABLE = "binary_sensor.nas_reachable"
INTERVAL = 31  # a check is due every 30 s


@pytest.fixture
def port(socket_enabled: None) -> int:
    """A free TCP port on loopback, nobody listening yet."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free: int = probe.getsockname()[1]
    return free


@pytest.fixture
def server_config_entry(request: pytest.FixtureRequest, port: int) -> MockConfigEntry:
    """The hub with NAS, whose port HA checks (on the host the test names)."""
    settings: dict[str, Any] = {
        CONF_REACH_HOST: getattr(request, "param", "127.0.0.1"),
        CONF_REACH_PORT: port,
    }
    return server_hub(**settings)


async def check(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the next check run (a background task)."""
    await elapse(hass, freezer, INTERVAL)
    await hass.async_block_till_done(wait_background_tasks=True)


def reachable(hass: HomeAssistant) -> str:
    state = hass.states.get(REACHABLE)
    assert state is not None
    return state.state


@pytest.mark.usefixtures("init_server")
async def test_reachability(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, port: int, issue_registry: ir.IssueRegistry
) -> None:
    assert reachable(hass) == STATE_UNKNOWN
    # nobody listens: no answer proves nothing
    await check(hass, freezer)
    assert reachable(hass) == STATE_OFF
    assert power_state(hass) == STATE_UNKNOWN
    server = tcp_listener(port)
    try:
        # the port answers: the server runs, before its agent says anything
        await check(hass, freezer)
        assert reachable(hass) == STATE_ON
        assert power_state(hass) == "on"
        # a crashed agent does not make a reachable server off, nor lost
        assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE"), (HEARTBEAT, "DEAD")) == "on"
        assert issues(issue_registry) == set()
        assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "ONLINE")) == "on"
    finally:
        server.close()
    # the port gone while the agent is alive: still on
    await check(hass, freezer)
    assert reachable(hass) == STATE_OFF
    assert power_state(hass) == "on"


@pytest.mark.parametrize("server_config_entry", [""], indirect=True)
async def test_no_check_without_a_host(hass: HomeAssistant, init_server: MockConfigEntry) -> None:
    """A server without a host has no reachability check: its sensor is unavailable."""
    assert hass.states.get(REACHABLE).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
