"""The server switch over the real broker and HA's real MQTT client; a test peer plays the agent."""

from __future__ import annotations

import asyncio
import time
from unittest.mock import patch

import paho.mqtt.client as paho
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver import protocol
from script.harness.clients import Peer
from script.harness.ha import COMMAND_KEY, RELAY_NODE, SERVER_ID, wait_state
from script.harness.mosquitto import Broker

SWITCH = "switch.nas_power"
SENSOR = "sensor.nas_power_state"


def topic(leaf: str) -> str:
    return protocol.server_topic("home", SERVER_ID, leaf)


async def test_switch_off_reaches_the_agent_and_follows_it(
    hass: HomeAssistant,
    mqtt_real: MockConfigEntry,
    mosquitto: Broker,
    server_config_entry: MockConfigEntry,
) -> None:
    agent = await hass.async_add_executor_job(lambda: Peer(mosquitto, client_id="agent-nas").connect())
    try:
        await hass.async_add_executor_job(agent.subscribe, topic(protocol.SERVER_SYSTEM))
        await hass.async_add_executor_job(agent.subscribe, topic(protocol.SERVER_REFRESH))
        await hass.async_add_executor_job(
            agent.subscribe, protocol.node_topic("home", RELAY_NODE, protocol.NODE_REFRESH)
        )
        # the state a running server left on the broker, as after an HA restart
        for leaf, payload in ((protocol.SERVER_HEARTBEAT, "ALIVE"), (protocol.SERVER_STATE, "ONLINE")):
            await hass.async_add_executor_job(agent.publish, topic(leaf), payload, 1, True)
        power = protocol.node_topic("home", RELAY_NODE, protocol.NODE_POWER)
        await hass.async_add_executor_job(agent.publish, power, "ON", 1, True)

        server_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(server_config_entry.entry_id)
        await wait_state(hass, SENSOR, "on")
        # HA asked the agent and the relay node for fresh state
        await hass.async_add_executor_job(agent.wait_topic, topic(protocol.SERVER_REFRESH))
        await hass.async_add_executor_job(
            agent.wait_topic, protocol.node_topic("home", RELAY_NODE, protocol.NODE_REFRESH)
        )

        await hass.services.async_call("switch", "turn_off", {ATTR_ENTITY_ID: SWITCH}, blocking=True)
        command: paho.MQTTMessage = await hass.async_add_executor_job(
            agent.wait_topic, topic(protocol.SERVER_SYSTEM)
        )
        assert not command.retain
        assert command.qos == 1
        verified = protocol.verify_command(COMMAND_KEY, SERVER_ID, command.payload, time.time(), {})
        assert verified.cmd == protocol.SHUTDOWN
        # not optimistic: still on until the agent answers
        assert hass.states.get(SENSOR).state == "on"  # type: ignore[union-attr]

        # the agent's answer, as the real agent gives it before calling logind
        await hass.async_add_executor_job(
            agent.publish, topic(protocol.SERVER_STATE), "SHUTTING_DOWN", 1, True
        )
        await wait_state(hass, SENSOR, "stopping")
        await hass.async_add_executor_job(agent.publish, topic(protocol.SERVER_HEARTBEAT), "DEAD", 1, True)
        await hass.async_add_executor_job(agent.publish, power, "OFF", 1, True)
        await wait_state(hass, SENSOR, "off")
        assert hass.states.get(SWITCH).state == "off"  # type: ignore[union-attr]
        # the command was never kept on the broker
        late = await hass.async_add_executor_job(lambda: Peer(mosquitto).connect())
        try:
            await hass.async_add_executor_job(late.subscribe, topic(protocol.SERVER_SYSTEM))
            await asyncio.sleep(0.5)
            assert late.received(topic(protocol.SERVER_SYSTEM)) == []
        finally:
            await hass.async_add_executor_job(late.close)
    finally:
        await hass.async_add_executor_job(agent.close)
    assert await hass.config_entries.async_unload(server_config_entry.entry_id)
    await hass.async_block_till_done()


async def test_refresh_after_broker_restart(
    hass: HomeAssistant,
    mqtt_real: MockConfigEntry,
    mosquitto: Broker,
    server_config_entry: MockConfigEntry,
) -> None:
    """HA's MQTT client reconnects after a broker restart and asks for fresh state again."""
    refresh = topic(protocol.SERVER_REFRESH)
    node_refresh = protocol.node_topic("home", RELAY_NODE, protocol.NODE_REFRESH)
    with patch("homeassistant.components.mqtt.client.RECONNECT_INTERVAL_SECONDS", 2):
        server_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(server_config_entry.entry_id)
        await hass.async_block_till_done()
        await hass.async_add_executor_job(mosquitto.restart)
        # the broker forgot everything: a new peer listens before HA's client is back
        peer = await hass.async_add_executor_job(lambda: Peer(mosquitto).connect())
        try:
            await hass.async_add_executor_job(peer.subscribe, refresh)
            await hass.async_add_executor_job(peer.subscribe, node_refresh)
            message = await hass.async_add_executor_job(peer.wait_topic, refresh, 30)
            assert not message.retain
            await hass.async_add_executor_job(peer.wait_topic, node_refresh, 10)
        finally:
            await hass.async_add_executor_job(peer.close)
    assert await hass.config_entries.async_unload(server_config_entry.entry_id)
    await hass.async_block_till_done()
