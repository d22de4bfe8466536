"""The measurement behind benchmarks/servers.py, run by pytest inside HA's test harness.

Fixtures (mqtt_real, server_config_entry) come from the integration tests, through
benchmarks/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver import protocol
from script.harness.agent import AgentProcess, agent_env
from script.harness.clients import Peer
from script.harness.ha import COMMAND_KEY, SERVER_ID, wait_state
from script.harness.mosquitto import Broker
from script.harness.procs import wait_for
from script.harness.system_bus import SystemBus

RUNS = int(os.environ.get("BENCH_RUNS", "300"))
# each run starts a fresh agent (after PowerOff it stays SHUTTING_DOWN)
PATH_RUNS = max(2, int(os.environ.get("BENCH_PATH_RUNS", "30")))
WARMUP = 20
SYSTEM = protocol.server_topic("home", SERVER_ID, protocol.SERVER_SYSTEM)


async def test_turn_off_latency(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker, server_config_entry: MockConfigEntry
) -> None:
    arrived: list[float] = []
    got = threading.Event()
    agent = await hass.async_add_executor_job(lambda: Peer(mosquitto, client_id="bench-agent").connect())

    def on_message(_client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == SYSTEM:
            arrived.append(time.perf_counter())
            got.set()

    agent.client.on_message = on_message
    try:
        await hass.async_add_executor_job(agent.subscribe, SYSTEM)
        for leaf, payload in ((protocol.SERVER_HEARTBEAT, "ALIVE"), (protocol.SERVER_STATE, "ONLINE")):
            topic = protocol.server_topic("home", SERVER_ID, leaf)
            await hass.async_add_executor_job(agent.publish, topic, payload, 1, True)
        server_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(server_config_entry.entry_id)
        await wait_state(hass, "switch.nas_power", "on")

        latencies: list[float] = []
        for run in range(WARMUP + RUNS):
            got.clear()
            start = time.perf_counter()
            await hass.services.async_call(
                "switch", "turn_off", {ATTR_ENTITY_ID: "switch.nas_power"}, blocking=True
            )
            assert await hass.async_add_executor_job(got.wait, 10), "command did not arrive"
            if run >= WARMUP:
                latencies.append((arrived[-1] - start) * 1000)
        assert len(arrived) == WARMUP + RUNS
        qs = statistics.quantiles(latencies, n=100, method="inclusive")
        print(
            f"\nserver switch turn_off -> signed SHUTDOWN at subscriber, {RUNS} runs "
            f"(real mosquitto over TLS, HA's MQTT client, QoS 1):\n"
            f"  p50 {statistics.median(latencies):.2f} ms  p99 {qs[98]:.2f} ms  "
            f"min {min(latencies):.2f} ms  max {max(latencies):.2f} ms"
        )
    finally:
        await hass.async_add_executor_job(agent.close)
    assert await hass.config_entries.async_unload(server_config_entry.entry_id)
    await hass.async_block_till_done()


async def test_turn_off_to_power_off(
    hass: HomeAssistant,
    mqtt_real: MockConfigEntry,
    mosquitto: Broker,
    system_bus: SystemBus,
    tmp_path: Path,
    server_config_entry: MockConfigEntry,
) -> None:
    """The whole path: switch turn_off -> broker -> real agent -> logind's PowerOff."""
    server_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(server_config_entry.entry_id)
    latencies: list[float] = []
    for run in range(PATH_RUNS):
        directory = tmp_path / f"agent{run}"
        env = agent_env(directory, mosquitto, system_bus, server_id=SERVER_ID, key=COMMAND_KEY)
        agent = AgentProcess(env, directory)
        try:
            await hass.async_add_executor_job(agent.start)
            await wait_state(hass, "sensor.nas_power_state", "on")
            # let HA's PUBACKs for the agent's reports go out first (Nagle, see DESIGN)
            await asyncio.sleep(0.2)
            calls = len(system_bus.calls("PowerOff"))
            sent = time.time()
            await hass.services.async_call(
                "switch", "turn_off", {ATTR_ENTITY_ID: "switch.nas_power"}, blocking=True
            )
            await hass.async_add_executor_job(
                wait_for, lambda n=calls: len(system_bus.calls("PowerOff")) > n, 10, "PowerOff"
            )
            latencies.append((system_bus.calls("PowerOff")[-1]["time"] - sent) * 1000)
            await wait_state(hass, "sensor.nas_power_state", "off")
        finally:
            await hass.async_add_executor_job(agent.stop)
    qs = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"\nserver switch turn_off -> logind PowerOff through the real agent, {PATH_RUNS} runs "
        f"(agent restarted per run):\n"
        f"  p50 {statistics.median(latencies):.2f} ms  p99 {qs[98]:.2f} ms  "
        f"min {min(latencies):.2f} ms  max {max(latencies):.2f} ms"
    )
    assert await hass.config_entries.async_unload(server_config_entry.entry_id)
    await hass.async_block_till_done()
