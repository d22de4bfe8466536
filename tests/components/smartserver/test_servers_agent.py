"""The whole path: HA's switch, HA's real MQTT client, mosquitto, the real agent, logind."""

from __future__ import annotations

from pathlib import Path

from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver import protocol
from custom_components.smartserver.const import CONF_BASE_TOPIC, DOMAIN
from script.harness.agent import TEST_KEY, AgentProcess, agent_env
from script.harness.clients import Peer
from script.harness.ha import RELAY_NODE, server_subentry, wait_state
from script.harness.mosquitto import Broker
from script.harness.system_bus import SystemBus

SERVER = "srv1"  # the harness agent's id


async def test_switch_off_powers_the_server_off(
    hass: HomeAssistant,
    mqtt_real: MockConfigEntry,
    mosquitto: Broker,
    system_bus: SystemBus,
    tmp_path: Path,
    issue_registry: ir.IssueRegistry,
) -> None:
    agent = AgentProcess(
        agent_env(tmp_path / "agent", mosquitto, system_bus, heartbeat="1"), tmp_path / "agent"
    )
    # the relay node's power sense: the server's power LED
    node = await hass.async_add_executor_job(lambda: Peer(mosquitto, client_id="node-relay1").connect())
    power = protocol.node_topic("home", RELAY_NODE, protocol.NODE_POWER)
    await hass.async_add_executor_job(node.publish, power, "ON", 1, True)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="SmartServer",
        data={},
        options={CONF_BASE_TOPIC: "home"},
        subentries_data=[server_subentry(server_id=SERVER, name="Lab", command_key=TEST_KEY)],
    )
    try:
        await hass.async_add_executor_job(agent.start)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await wait_state(hass, "sensor.lab_power_state", "on")
        # the agent's network report arrived (its reachability target is the broker)
        await wait_state(hass, "binary_sensor.lab_internet", "on")

        await hass.services.async_call(
            "switch", "turn_off", {ATTR_ENTITY_ID: "switch.lab_power"}, blocking=True
        )
        # SHUTTING_DOWN and DEAD arrive before logind is asked: the server is stopping,
        # and heads down (the switch shows off), but it is not off while it is powered
        await wait_state(hass, "sensor.lab_power_state", "stopping")
        await hass.async_add_executor_job(agent.wait_output, "logind accepted PowerOff")
        assert [c["args"] for c in system_bus.calls("PowerOff")] == [[False]]
        await wait_state(hass, "binary_sensor.lab_agent", "off")
        await hass.async_block_till_done()
        assert hass.states.get("sensor.lab_power_state").state == "stopping"  # type: ignore[union-attr]
        assert hass.states.get("switch.lab_power").state == "off"  # type: ignore[union-attr]

        # the system powers off: the power LED goes dark, and only that makes it off
        await hass.async_add_executor_job(node.publish, power, "OFF", 1, True)
        await wait_state(hass, "sensor.lab_power_state", "off")
        off = hass.states.get("sensor.lab_power_state")
        assert off is not None
        assert off.last_changed.timestamp() > system_bus.calls("PowerOff")[0]["time"]
        # the switch followed the agent's own reports and the power sense, with no issue
        assert hass.states.get("switch.lab_power").state == "off"  # type: ignore[union-attr]
        assert [i for (d, i) in issue_registry.issues if d == DOMAIN] == []
    finally:
        await hass.async_add_executor_job(agent.stop)
        await hass.async_add_executor_job(node.close)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert len(system_bus.calls("PowerOff")) == 1
