"""Availability is logged once when lost and once when back: nodes and server agents."""

from __future__ import annotations

import logging

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from script.harness.ha import RELAY_NODE, SERVER_ID

HEARTBEAT = f"home/server/{SERVER_ID}/heartbeat"
STATE = f"home/server/{SERVER_ID}/state"


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[int]:
    """Levels of the records of this integration that contain `text`."""
    return [
        r.levelno
        for r in caplog.records
        if r.name.startswith("custom_components.smartserver") and text in r.getMessage()
    ]


async def fire(hass: HomeAssistant, topic: str, *payloads: str, retain: bool = False) -> None:
    for payload in payloads:
        async_fire_mqtt_message(hass, topic, payload, retain=retain)
        await hass.async_block_till_done()


async def test_node_offline_and_back_logged_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fire(hass, "home/node/node1/status", "ONLINE", "ONLINE")
    await fire(hass, "home/node/node1/status", "OFFLINE", "OFFLINE", "", "OFFLINE")
    assert logged(caplog, "Node node1 is offline") == [logging.INFO]
    assert logged(caplog, "Node node1 is back online") == []
    await fire(hass, "home/node/node1/status", "ONLINE", "ONLINE")
    assert logged(caplog, "Node node1 is back online") == [logging.INFO]
    # the next loss is logged again, once
    await fire(hass, "home/node/node1/status", "OFFLINE", "OFFLINE")
    assert logged(caplog, "Node node1 is offline") == [logging.INFO, logging.INFO]


async def test_node_offline_at_start_logged_and_online_at_start_not(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fire(hass, "home/node/node1/status", "OFFLINE", retain=True)
    await fire(hass, "home/node/node2/status", "ONLINE", retain=True)
    assert logged(caplog, "Node node1 is offline") == [logging.INFO]
    assert logged(caplog, "Node node2") == []


async def test_agent_disconnect_after_shutdown_and_return_logged_once(
    hass: HomeAssistant, init_server: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fire(hass, HEARTBEAT, "ALIVE")
    await fire(hass, STATE, "ONLINE")
    assert logged(caplog, "the agent is connected again") == []
    await fire(hass, STATE, "SHUTTING_DOWN")
    await fire(hass, HEARTBEAT, "DEAD")
    await fire(hass, HEARTBEAT, "DEAD", retain=True)  # replayed on a resubscribe
    assert logged(caplog, f"Server {SERVER_ID}: the agent disconnected") == [logging.INFO]
    await fire(hass, HEARTBEAT, "ALIVE", "ALIVE", "ALIVE")
    assert logged(caplog, f"Server {SERVER_ID}: the agent is connected again") == [logging.INFO]


async def test_agent_disconnect_after_power_off_logged_once(
    hass: HomeAssistant, init_server: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fire(hass, HEARTBEAT, "ALIVE", retain=True)
    await fire(hass, f"home/node/{RELAY_NODE}/power", "OFF")
    await fire(hass, HEARTBEAT, "DEAD")
    assert logged(caplog, f"Server {SERVER_ID}: the agent disconnected") == [logging.INFO]


async def test_agent_lost_warned_once_and_return_logged(
    hass: HomeAssistant, init_server: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """An unannounced loss is the existing warning (not an extra line); the return is info."""
    caplog.set_level(logging.INFO)
    await fire(hass, HEARTBEAT, "ALIVE")
    await fire(hass, STATE, "ONLINE")
    await fire(hass, HEARTBEAT, "DEAD", "DEAD")
    assert logged(caplog, "the agent stopped reporting") == [logging.WARNING]
    assert logged(caplog, "the agent disconnected") == []
    await fire(hass, HEARTBEAT, "ALIVE")
    assert logged(caplog, "the agent is connected again") == [logging.INFO]
