"""Config serving and logs through Home Assistant's real MQTT client and a real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from script.harness.clients import Peer
from script.harness.mosquitto import Broker

from .nodes_common import component, root, settle, wait_until, write


async def _hub(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def _peer(hass: HomeAssistant, broker: Broker, client_id: str = "") -> Peer:
    return await hass.async_add_executor_job(lambda: Peer(broker, client_id=client_id).connect())


async def _ask_until(hass: HomeAssistant, peer: Peer, node: str, payload: str, done_topic: str) -> None:
    """Publish a request until HA's (debounced) subscription answers, as nodes do."""
    async with asyncio.timeout(20):
        while not peer.received(done_topic):
            await hass.async_add_executor_job(peer.publish, f"home/login/{node}/set", payload, 0)
            await asyncio.sleep(0.5)


async def test_full_answer_over_real_broker(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker, mock_config_entry: MockConfigEntry
) -> None:
    await _hub(hass, mock_config_entry)
    component(hass, "node1", "led.json", {"pin": 2})
    peer = await _peer(hass, mosquitto)
    try:
        await hass.async_add_executor_job(peer.subscribe, "home/login/node1")
        await _ask_until(hass, peer, "node1", '"5.1.0"', "home/login/node1")
        answer = peer.received("home/login/node1")[0]
        assert json.loads(answer.payload) == {"led": {"pin": 2}, "_order": ["led"]}
        assert answer.qos == 1
        assert not answer.retain
    finally:
        await hass.async_add_executor_job(peer.close)
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


async def test_pysmartnode_remote_config_client(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker, mock_config_entry: MockConfigEntry
) -> None:
    """Shaped like pysmartnode's remoteConfig: `<base>/login/<id>/#`, count, then components."""
    await _hub(hass, mock_config_entry)
    write(root(hass) / "device_names.yaml", "espnode: livingroom\n")
    write(root(hass) / "clients/livingroom/config/htu.hjson", "{\n  component: HTU21D\n  interval: 600\n}\n")
    component(hass, "livingroom", "led.json", {"component": "LED", "pin": 2})
    component(hass, "livingroom", "_order.json", ["led", "htu"])
    peer = await _peer(hass, mosquitto, client_id="espnode")
    components: dict[str, object] = {}
    count: list[int] = []

    def on_message(topic: str, payload: bytes) -> None:
        if topic.endswith("/set"):
            return  # its own request, as the firmware skips it
        if topic == "home/login/espnode":
            count.append(int(payload))
        elif count:
            components.setdefault(topic.rsplit("/", 1)[1], json.loads(payload))

    try:
        await hass.async_add_executor_job(peer.subscribe, "home/login/espnode/#")
        async with asyncio.timeout(30):
            while not count or len(components) < count[0]:
                await hass.async_add_executor_job(
                    peer.publish, "home/login/espnode/set", json.dumps(["6.0.0", "esp32", 0.05]), 0
                )
                await asyncio.sleep(1)
                for msg in peer.received():
                    on_message(msg.topic, msg.payload)
        assert count[0] == 2
        assert components == {
            "led": {"component": "LED", "pin": 2},
            "htu": {"component": "HTU21D", "interval": 600},
        }
        order = [
            m.topic.rsplit("/", 1)[1]
            for m in peer.received()
            if m.topic.count("/") == 3 and "/set" not in m.topic
        ]
        assert order[:2] == ["led", "htu"]
        assert all(m.qos == 1 and not m.retain for m in peer.received() if not m.topic.endswith("/set"))
    finally:
        await hass.async_add_executor_job(peer.close)
    assert (root(hass) / "clients/livingroom/config").is_dir()
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


def _count_lines(path: Path) -> int:
    files = [path, *path.parent.glob(path.name + ".*")]
    return sum(f.read_bytes().count(b"\n") for f in files if f.exists())


async def test_flood_of_20000_over_real_broker_loses_nothing(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker, mock_config_entry: MockConfigEntry
) -> None:
    await _hub(hass, mock_config_entry)
    general = root(hass) / "smartserver.log"
    peer = await _peer(hass, mosquitto)
    try:
        # the subscription is debounced: probe until a line arrives
        async with asyncio.timeout(20):
            while not await hass.async_add_executor_job(_count_lines, general):
                await hass.async_add_executor_job(peer.publish, "home/log/info/probe", b"probe", 1)
                await asyncio.sleep(0.5)
        probes = await hass.async_add_executor_job(_count_lines, general)

        def flood() -> None:
            infos = [
                peer.client.publish(f"home/log/{('info', 'error')[i % 2]}/node{i % 50}", f"flood {i}", qos=1)
                for i in range(20_000)
            ]
            for info in infos:
                info.wait_for_publish(120)

        await hass.async_add_executor_job(flood)
        await wait_until(lambda: general.exists() and _count_lines(general) >= probes + 20_000, limit_s=120)
    finally:
        await hass.async_add_executor_job(peer.close)
    await settle(hass)  # the writer's batches are background tasks

    def collected() -> tuple[list[int], dict[int, list[int]]]:
        files = sorted(general.parent.glob("smartserver.log*"))
        numbers = [
            int(line.rsplit(" ", 1)[1])
            for f in files
            for line in f.read_text().splitlines()
            if "] flood " in line
        ]
        per_node = {}
        for n in range(50):
            log = root(hass) / f"clients/node{n}/node{n}.log"
            per_node[n] = sorted(int(line.rsplit(" ", 1)[1]) for line in log.read_text().splitlines())
        return sorted(numbers), per_node

    numbers, per_node = await hass.async_add_executor_job(collected)
    assert numbers == list(range(20_000))
    for n in range(50):
        assert per_node[n] == list(range(n, 20_000, 50))
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
