"""The measurement behind benchmarks/nodes.py, run by pytest inside HA's test harness."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from ingest_ha import BREAKDOWN, NOOP_BASE, Breakdown, Floods
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver.const import CONF_BASE_TOPIC, CONF_LOG_MAX_KB, DOMAIN
from custom_components.smartserver.logs import GENERAL_LOG
from script.harness.clients import Peer
from script.harness.mosquitto import Broker

SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "500"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "20000"))
# the machine's figures vary from run to run: each burst and flood runs this often
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
BURSTS = int(os.environ.get("BENCH_BURSTS", str(REPEATS)))
QOS = [int(q) for q in os.environ.get("BENCH_QOS", "1 0").split()]  # the log floods' QoS, in order
CEILING_PROTOCOL = os.environ.get("BENCH_CEILING_PROTOCOL")  # default: HA's ("5" or "3.1.1")
BURST = 200
NODES = 50
BASE = "home"


def pct(values: list[float], q: float) -> float:
    """Inclusive percentile in ms."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _make_configs(root: Path) -> None:
    for i in range(BURST):
        folder = root / "clients" / f"n{i}" / "config"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "led.json").write_text(json.dumps({"component": "LED", "pin": 2, "node": f"n{i}"}))
        (folder / "htu.hjson").write_text("{\n  component: HTU21D\n  i2c: 1\n}\n")
        (folder / "button.json").write_text('{"component": "Button", "pin": 4}')


class LoopLag:
    """Worst delay of a 10 ms sleep in HA's event loop while running, and the longest
    garbage collection of HA's process meanwhile (a full one stops every thread)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.longest_gc = 0.0
        self.gc_total = 0.0  # all collections, seconds
        self.gc_count = 0
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - start - 0.01)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_start
            self.longest_gc = max(self.longest_gc, took)
            self.gc_total += took
            self.gc_count += 1

    def start(self) -> None:
        self.worst = self.longest_gc = self.gc_total = 0.0
        self.gc_count = 0
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> tuple[float, float]:
        """Worst lag and longest collection, in ms."""
        assert self._task is not None
        self._task.cancel()
        gc.callbacks.remove(self._on_gc)
        return self.worst * 1000, self.longest_gc * 1000


def writer_memory(pid: int) -> str:
    """The writer process's resident memory, and how much of it is its own (anonymous)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    kib = {
        key: int(value.split()[0])
        for key, value in (line.split(":", 1) for line in lines)
        if key.startswith("Rss")
    }
    return f"{kib['RssAnon'] / 1024:.1f} MiB of its own (resident {sum(kib.values()) / 1024:.1f} MiB)"


async def test_nodes_benchmark(hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker) -> None:
    hass.loop.set_debug(False)  # the harness' asyncio debug mode would dominate the figures
    entry = MockConfigEntry(domain=DOMAIN, options={CONF_BASE_TOPIC: BASE, CONF_LOG_MAX_KB: 1024 * 1024})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    root = Path(hass.config.path("smartserver"))
    await hass.async_add_executor_job(_make_configs, root)
    run = hass.async_add_executor_job
    helper = [sys.executable, str(Path(__file__).with_name("peers.py"))]
    auth = [str(mosquitto.tls_port), mosquitto.username, mosquitto.password, str(mosquitto.certs.ca)]

    # the nodes' client in its own process: in HA's it took HA's interpreter lock
    nodes = await asyncio.create_subprocess_exec(
        *helper,
        "configs",
        *auth,
        str(SEQUENTIAL),
        str(BURST),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert nodes.stdin is not None
        assert nodes.stdout is not None
        async with asyncio.timeout(30):
            assert await nodes.stdout.readline() == b"ready\n"

        async def phase(name: str) -> list[float]:
            assert nodes.stdin is not None
            assert nodes.stdout is not None
            nodes.stdin.write(name.encode() + b"\n")
            await nodes.stdin.drain()
            async with asyncio.timeout(300):
                line = await nodes.stdout.readline()
            if not line:
                raise AssertionError(f"the nodes' client ended in the {name} phase")
            result: list[float] = json.loads(line)
            return result

        seq = await phase("sequential")
        lag = LoopLag()
        bursts: list[tuple[list[float], float, tuple[float, float]]] = []  # latencies, requests/s, lag
        for _ in range(BURSTS):
            lag.start()
            *burst_lat, rate = await phase("burst")
            bursts.append((burst_lat, rate, lag.stop()))
        nodes.stdin.close()
        assert await nodes.wait() == 0
    finally:
        if nodes.returncode is None:
            nodes.terminate()
            await nodes.wait()

    nodelay = os.environ.get("BENCH_BROKER_NODELAY") == "1"
    # the ceiling speaks HA's protocol: MQTT 5 costs HA's client and paho alike
    protocol = CEILING_PROTOCOL or mqtt_real.data["protocol"]
    print(
        f"\nbroker: mosquitto, TLS, set_tcp_nodelay {str(nodelay).lower()}; HA's MQTT protocol "
        f"{mqtt_real.data['protocol']}, the ceiling's {protocol}"
    )
    if seq:
        print(
            f"config serving, sequential ({SEQUENTIAL}): "
            f"p50 {pct(seq, 0.5):.2f} ms, p99 {pct(seq, 0.99):.2f} ms, every answer checked"
        )
    for burst_lat, rate, (burst_lag, burst_gc) in bursts:
        print(
            f"config serving, burst of {BURST} nodes: p50 {pct(burst_lat, 0.5):.1f} ms, "
            f"p99 {pct(burst_lat, 0.99):.1f} ms, {rate:.0f} requests/s, every answer checked; "
            f"worst loop lag {burst_lag:.1f} ms (longest garbage collection {burst_gc:.1f} ms)"
        )
    if bursts:
        p99s = [pct(b[0], 0.99) for b in bursts]
        print(
            f"  bursts: median p99 {statistics.median(p99s):.1f} ms (of {BURSTS}: "
            f"{' / '.join(f'{v:.0f}' for v in p99s)}), worst loop lag {max(b[2][0] for b in bursts):.1f} ms"
        )

    # its own client id: a second "bench-flood" would take over (and cut) the flood's session
    publisher = await run(lambda: Peer(mosquitto, client_id="bench-warmup").connect())
    process = entry.runtime_data.nodes.logs.writer.process
    # (lines, seconds from hand-over to answer) per batch
    batches: list[tuple[int, float]] = []
    real_write = process.write

    def process_cpu() -> float:
        """The writer process's CPU seconds so far: read before and after a flood, not per
        batch (two file reads per batch in the measured loop; the ticks are 10 ms anyway)."""
        # utime and stime (fields 14, 15 of /proc/<pid>/stat; the name may hold spaces)
        if process.pid is None:
            return 0.0
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def counted_write(lines: list[Any], held_back: frozenset[str], **how: Any) -> Any:
        begin = time.perf_counter()
        try:
            return await real_write(lines, held_back, **how)
        finally:
            batches.append((len(lines), time.perf_counter() - begin))

    process.write = counted_write
    general = root / GENERAL_LOG
    registry = entry.runtime_data.nodes.registry

    def last_handled() -> float:
        return max((node.last_log_ts or 0.0) for node in registry.nodes.values())

    breakdown = Breakdown(entry.runtime_data.nodes.logs) if BREAKDOWN else None
    floods = Floods(
        hass, helper, auth, protocol, MESSAGES, general, lag, batches, process_cpu, last_handled, breakdown
    )
    try:
        # warm up the log subscription (debounced) and the node directories
        async with asyncio.timeout(20):
            while not await run(lambda: general.exists() and general.stat().st_size > 0):
                await run(publisher.publish, "home/log/info/n0", "warm", 1)
                await asyncio.sleep(0.3)
        await floods.async_setup(publisher.publish)
        print(
            f"log ingest: {MESSAGES} messages over {NODES} nodes per flood, the integration's floods "
            f"alternated with the ceiling's (a no-op subscriber in this HA, base topic {NOOP_BASE!r})"
        )
        ceilings = {qos: await floods.compare(qos, NODES, REPEATS) for qos in QOS}
        # every line from another made-up id: beyond the new-node budget (spent by the
        # bursts) nodes are held back, their lines go to the general log only
        hub = entry.runtime_data.nodes
        known = len(hub.registry.nodes)
        made_up = await floods.run(1, MESSAGES, "made-up ids", noop=False)
        ceiling = ""
        if 1 in ceilings:
            share = made_up.rate / statistics.median(c.rate for c in ceilings[1])
            ceiling = f"; {100 * share:.0f} % of the QoS 1 ceiling's median"
        print(
            f"  made-up ids: {len(hub.registry.nodes) - known} new node devices, "
            f"{hub.diagnostics()['new_nodes']['held_back']} ids held back{ceiling}"
        )
        await floods.callback_cost(
            entry.runtime_data.coordinator._on_log, entry.runtime_data.nodes.logs.writer, NODES
        )
        if process.pid is not None:
            print(f"log writer process: {await run(writer_memory, process.pid)}")
        floods.print_profile()
    finally:
        await run(publisher.close)
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
