"""Helpers of the servers' HA-level tests: the server's topics and entities, evidence, commands."""

from __future__ import annotations

import time
from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import protocol
from custom_components.smartserver.const import DOMAIN
from script.harness.ha import RELAY_NODE, SERVER_ID

SWITCH = "switch.nas_power"
SENSOR = "sensor.nas_power_state"
AGENT = "binary_sensor.nas_agent"
REBOOT = "button.nas_reboot"
HEARTBEAT = f"home/server/{SERVER_ID}/heartbeat"
STATE = f"home/server/{SERVER_ID}/state"
NETWORK = f"home/server/{SERVER_ID}/network"
SYSTEM = f"home/server/{SERVER_ID}/system"
POWER = f"home/node/{RELAY_NODE}/power"
POWER_SET = f"home/node/{RELAY_NODE}/power/set"


def fire(hass: HomeAssistant, topic: str, payload: str, retain: bool = False) -> None:
    async_fire_mqtt_message(hass, topic, payload, retain=retain)


def power_state(hass: HomeAssistant) -> str:
    state = hass.states.get(SENSOR)
    assert state is not None
    return state.state


def published(mqtt_mock: MqttMockHAClient, topic: str) -> list[tuple[str, str, int, bool]]:
    return [call.args[:4] for call in mqtt_mock.async_publish.call_args_list if call.args[0] == topic]


def verified(mqtt_mock: MqttMockHAClient, topic: str, key: str, target: str) -> list[str]:
    """Check every command sent on `topic`: signed for `target`, QoS 1, never retained."""
    commands = []
    for _topic, payload, qos, retain in published(mqtt_mock, topic):
        assert qos == 1
        assert retain is False
        commands.append(protocol.verify_command(key, target, payload, time.time(), {}).cmd)
    return commands


def issues(issue_registry: ir.IssueRegistry) -> set[str]:
    return {issue_id for (domain, issue_id) in issue_registry.issues if domain == DOMAIN}


async def switch(hass: HomeAssistant, service: str) -> None:
    await hass.services.async_call("switch", service, {ATTR_ENTITY_ID: SWITCH}, blocking=True)
    await hass.async_block_till_done()


async def elapse(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def report(hass: HomeAssistant, *messages: tuple[str, str], retain: bool = False) -> str:
    """Deliver messages (topic, payload), live unless `retain`, and return the power state after them."""
    for topic, payload in messages:
        fire(hass, topic, payload, retain)
    await hass.async_block_till_done()
    return power_state(hass)


def _sense(power: str | None) -> tuple[tuple[str, str], ...]:
    return ((POWER, power),) if power else ()


async def running(hass: HomeAssistant, power: str | None = protocol.POWER_ON) -> None:
    """Retained evidence of a running server, as after a restart of HA."""
    assert await report(hass, *_sense(power), (HEARTBEAT, "ALIVE"), (STATE, "ONLINE"), retain=True) == "on"


async def stopped(hass: HomeAssistant, power: str | None = protocol.POWER_OFF) -> None:
    """Retained evidence of a server shut down through its agent."""
    assert (
        await report(hass, *_sense(power), (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD"), retain=True)
        == "off"
    )
