"""Log ingest against its ceiling, for nodes_ha.py: floods into HA's MQTT client, in turns.

The ceiling is a no-op callback subscribed in the same Home Assistant through HA's own
MQTT client (`mqtt.async_subscribe`, the integration's QoS, encoding=None) on another
base topic, so it receives the same flood (count, topic and payload sizes, QoS) through
the same client, broker and TLS connection. Integration and no-op floods alternate in
one run; each pair gives a ratio: lines on disk per second / messages received per second.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant, callback

# same length as the integration's "home": the same bytes per message
NOOP_BASE = "noop"
# BENCH_PAHO=0 leaves out the paho subscriber in another process (a secondary figure)
PAHO = os.environ.get("BENCH_PAHO", "1") == "1"
# BENCH_PROFILE=1: cProfile (every thread) over the integration's floods, printed at the end
# (and saved to BENCH_PROFILE_OUT if set)
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
# BENCH_BREAKDOWN=1: the integration's own time in the loop per flood, measured in place
# (timers around its line handler and events: about 0.2 us per message more)
BREAKDOWN = os.environ.get("BENCH_BREAKDOWN") == "1"


class Noop:
    """The ceiling's subscriber: counts, and keeps the time of the last message."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    @callback
    def on_message(self, _msg: mqtt.ReceiveMessage) -> None:
        self.count += 1
        self.last = time.time()


class Breakdown:
    """Times the log ingest's line handler (it queues the line) and the events (fired per
    batch) where they run: in the floods.

    A loop of calls (`callback_cost`) runs with warm caches; in a flood, HA's MQTT
    client runs between two lines, and the same code takes two to four times as long.
    """

    def __init__(self, logs: Any) -> None:
        """Wrap `logs.async_line` and `logs._fire` (instance attributes: looked up per call)."""
        self.reset()
        line, fire = logs.async_line, logs._fire

        def timed_line(*args: Any) -> None:
            begin = time.perf_counter_ns()
            line(*args)
            self.line_ns += time.perf_counter_ns() - begin
            self.lines += 1

        def timed_fire(*args: Any) -> None:
            begin = time.perf_counter_ns()
            fire(*args)
            self.fire_ns += time.perf_counter_ns() - begin
            self.fires += 1

        setattr(logs, "async_line", timed_line)  # noqa: B010 (mypy: no assigning to a method)
        setattr(logs, "_fire", timed_fire)  # noqa: B010

    def reset(self) -> None:
        """Start counting again."""
        self.line_ns = self.lines = self.fire_ns = self.fires = 0

    def take(self) -> str:
        """What the last flood cost, and start again."""
        each = self.fire_ns / self.fires / 1000 if self.fires else 0.0
        text = (
            f"  in place: line handling {self.line_ns / max(1, self.lines) / 1000:.2f} us per line, "
            f"of it events {self.fire_ns / max(1, self.lines) / 1000:.2f} us ({self.fires} events, "
            f"{each:.0f} us each)"
        )
        self.reset()
        return text


@dataclass(slots=True)
class Flood:
    """One flood: messages (lines) per second, lost, loop lag, CPU."""

    rate: float
    lost: int
    lag_ms: float
    gc_ms: float
    loop_us: float  # event-loop CPU per message
    writer_us: float  # writer CPU per message (0 for the no-op)
    paho_rate: float | None


class Floods:
    """Runs floods into the integration (base `home`) and the no-op (base NOOP_BASE)."""

    def __init__(
        self,
        hass: HomeAssistant,
        helper: list[str],
        auth: list[str],
        protocol: str,
        messages: int,
        general: Path,
        lag: Any,
        batches: list[tuple[int, float]],
        writer_cpu: Callable[[], float],
        last_handled: Callable[[], float],
        breakdown: Breakdown | None = None,
    ) -> None:
        self.hass = hass
        self.helper = helper
        self.auth = auth
        self.protocol = protocol
        self.messages = messages
        self.general = general
        self.lag = lag
        self.batches = batches  # the writer's batches: (lines, seconds)
        self.writer_cpu = writer_cpu  # the writer process's CPU seconds so far
        self.last_handled = last_handled  # when the integration's callback took its last line
        self.breakdown = breakdown
        self.noop = Noop()
        self.profile = cProfile.Profile() if PROFILE else None

    async def async_setup(self, publish: Callable[[str, str, int], Any]) -> None:
        """Subscribe the no-op like the integration (QoS 1, bytes) and wait until it receives."""
        await mqtt.async_subscribe(
            self.hass, f"{NOOP_BASE}/log/+/+", self.noop.on_message, qos=1, encoding=None
        )
        async with asyncio.timeout(20):
            while not self.noop.count:
                await self.hass.async_add_executor_job(publish, f"{NOOP_BASE}/log/info/n0", "warm", 1)
                await asyncio.sleep(0.3)

    async def _spawn(self, *args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self.helper, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        assert await process.stdout.readline() == b"ready\n"
        return process

    async def run(self, qos: int, nodes: int, label: str, noop: bool) -> Flood:
        """One flood of the benchmark's message count over `nodes` node ids."""
        base = NOOP_BASE if noop else "home"
        processes: list[asyncio.subprocess.Process] = []
        try:
            counter = None
            if PAHO:
                counter = await self._spawn(
                    "count", *self.auth, str(qos), str(self.messages), self.protocol, base
                )
                processes.append(counter)
            tailer = None
            if not noop:
                # the lines on disk are counted in another process: polling the files
                # from HA's process took HA's interpreter lock from the measured loop
                offset = await self.hass.async_add_executor_job(os.path.getsize, self.general)
                tailer = await self._spawn("tail", str(self.general), str(offset), str(self.messages))
                processes.append(tailer)
            publisher = await self._spawn(
                "publish", *self.auth, str(qos), str(self.messages), str(nodes), base
            )
            processes.append(publisher)
            assert publisher.stdin is not None
            self.batches.clear()
            if self.breakdown is not None:
                self.breakdown.reset()  # not the warm-up's lines
            self.noop.count = 0
            if self.profile is not None and not noop:
                self.profile.enable()
            writer_cpu = self.writer_cpu()
            loop_cpu = time.thread_time()  # this is HA's event loop thread
            self.lag.start()
            start = time.time()
            publisher.stdin.write(b"go\n")
            await publisher.stdin.drain()
            if tailer is not None:
                assert tailer.stdout is not None
                async with asyncio.timeout(300):
                    done_s, _lines, got_s = (await tailer.stdout.readline()).split()
                done, got = float(done_s), int(got_s)
            else:
                done, got = await self._noop_done()
            lag_ms, gc_ms = self.lag.stop()
            gc_count, gc_total = self.lag.gc_count, self.lag.gc_total
            loop_cpu = time.thread_time() - loop_cpu
            if self.profile is not None:
                self.profile.disable()
            writer_cpu = self.writer_cpu() - writer_cpu
            batches = list(self.batches)
            async with asyncio.timeout(300):
                assert await publisher.wait() == 0
            paho_rate = None
            if counter is not None:
                assert counter.stdout is not None
                async with asyncio.timeout(120):
                    paho_done, paho_got = (await counter.stdout.readline()).split()
                paho_rate = int(paho_got) / (float(paho_done) - start)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.terminate()
                await process.wait()
        result = Flood(
            rate=got / (done - start),
            lost=self.messages - got,
            lag_ms=lag_ms,
            gc_ms=gc_ms,
            loop_us=1e6 * loop_cpu / self.messages,
            writer_us=1e6 * writer_cpu / self.messages,
            paho_rate=paho_rate,
        )
        paho = f"; paho subscriber (another process) {paho_rate:.0f} msg/s" if paho_rate else ""
        what = "no-op subscriber received" if noop else "integration: on disk"
        if not noop and nodes < self.messages:  # its callback's rate, before the writer (known nodes)
            what = f"integration: handled {self.messages / (self.last_handled() - start):.0f} msg/s, on disk"
        print(
            f"{label} QoS {qos}, {nodes} nodes: {what} {got} of {self.messages} ({result.rate:.0f} msg/s, "
            f"lost {result.lost}); loop lag {lag_ms:.1f} ms (garbage collections: {gc_count}, "
            f"{1000 * gc_total:.0f} ms in all, the longest {gc_ms:.1f} ms); "
            f"CPU per message: event loop {result.loop_us:.1f} us, writer {result.writer_us:.1f} us{paho}"
        )
        if self.breakdown is not None and not noop:
            print(self.breakdown.take())
        if batches:
            busy = sum(s for _n, s in batches)
            each = sum(n for n, _s in batches) / len(batches)
            print(
                f"  writer: {len(batches)} batches of {each:.0f} lines, "
                f"{1000 * busy / len(batches):.1f} ms each, {100 * busy / (done - start):.0f} % of the flood"
            )
        return result

    async def _noop_done(self) -> tuple[float, int]:
        """Wait until the no-op got every message (or none came for 15 s)."""
        seen, idle_since = -1, time.monotonic()
        while self.noop.count < self.messages:
            if self.noop.count != seen:
                seen, idle_since = self.noop.count, time.monotonic()
            elif time.monotonic() - idle_since > 15:
                break
            await asyncio.sleep(0.01)
        return self.noop.last, self.noop.count

    async def compare(self, qos: int, nodes: int, repeats: int) -> list[Flood]:
        """`repeats` pairs of floods, the order swapped each time; prints the medians."""
        pairs: list[tuple[Flood, Flood]] = []
        for index in range(repeats):
            order = (False, True) if index % 2 == 0 else (True, False)
            run: dict[bool, Flood] = {}
            for noop in order:
                run[noop] = await self.run(qos, nodes, "ceiling" if noop else "log ingest", noop)
            pairs.append((run[False], run[True]))
        ratios = [100 * ours.rate / ceiling.rate for ours, ceiling in pairs]
        ours = [p[0] for p in pairs]
        noops = [p[1] for p in pairs]

        def span(values: list[float], unit: str = "") -> str:
            return f"median {statistics.median(values):.0f}{unit} (range {min(values):.0f}-{max(values):.0f})"

        extra = [o.loop_us + o.writer_us - n.loop_us for o, n in pairs]
        print(
            f"  QoS {qos} ({repeats} pairs): ratio {span(ratios, ' %')}; integration "
            f"{span([o.rate for o in ours])} msg/s, no-op {span([n.rate for n in noops])} msg/s; "
            f"lost {sum(o.lost for o in ours)} (no-op {sum(n.lost for n in noops)}); worst loop lag "
            f"{max(o.lag_ms for o in ours):.0f} ms (no-op {max(n.lag_ms for n in noops):.0f} ms); "
            f"integration's CPU per message {statistics.median(extra):.1f} us"
        )
        if PAHO:
            paho = [100 * o.rate / o.paho_rate for o in ours if o.paho_rate]
            print(f"  secondary: integration / paho subscriber in another process {span(paho, ' %')}")
        return noops

    async def callback_cost(
        self, on_log: Callable[[mqtt.ReceiveMessage], None], writer: Any, nodes: int
    ) -> None:
        """The integration's own time per message: its MQTT callback called in a loop, then the writer."""
        levels = tuple(os.environ.get("BENCH_ALONE_LEVELS", "info warning error").split())
        messages = [
            mqtt.ReceiveMessage(
                f"home/log/{levels[i % len(levels)]}/n{i % nodes}",
                f"bench message {i} with some text to look like a log line".encode(),
                1,
                False,
                "home/log/+/+",
                time.monotonic(),
            )
            for i in range(self.messages)
        ]
        self.batches.clear()
        writer_cpu = self.writer_cpu()
        begin = time.perf_counter()
        for message in messages:
            on_log(message)
        loop_s = time.perf_counter() - begin
        async with asyncio.timeout(60):
            while writer.queued or sum(n for n, _s in self.batches) < self.messages:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        writer_cpu = self.writer_cpu() - writer_cpu
        print(
            f"the integration alone ({self.messages} messages handed to its MQTT callback in a loop): "
            f"{1e6 * loop_s / self.messages:.1f} us per message in the event loop, writer "
            f"{1e6 * writer_cpu / self.messages:.1f} us CPU per line"
        )

    def print_profile(self) -> None:
        if self.profile is None:
            return
        if path := os.environ.get("BENCH_PROFILE_OUT"):
            self.profile.dump_stats(path)
        out = io.StringIO()
        pstats.Stats(self.profile, stream=out).sort_stats("tottime").print_stats(40)
        sys.stdout.write(out.getvalue())
