"""Binary sensor platform: a node's status and a server's agent (more of the servers' in test_servers.py)."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from .nodes_common import settle, written
from .servers_common import HEARTBEAT, POWER


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


@pytest.mark.usefixtures("init_server")
async def test_agent_of_a_new_server_that_is_off_reads_disconnected(hass: HomeAssistant) -> None:
    """Nothing retained from an agent that never ran; the power sense says off: not unknown."""
    entity = "binary_sensor.nas_agent"
    assert hass.states.get(entity).state == "unknown"  # type: ignore[union-attr]
    async_fire_mqtt_message(hass, POWER, "OFF", retain=True)
    await settle(hass)
    assert hass.states.get(entity).state == "off"  # type: ignore[union-attr]
    # while the server starts, whether its agent is up yet is not known
    async_fire_mqtt_message(hass, POWER, "ON")
    await settle(hass)
    assert hass.states.get(entity).state == "unknown"  # type: ignore[union-attr]
    async_fire_mqtt_message(hass, HEARTBEAT, "ALIVE")
    await settle(hass)
    assert hass.states.get(entity).state == "on"  # type: ignore[union-attr]
