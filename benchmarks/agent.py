"""Agent benchmark: signed SHUTDOWN -> logind PowerOff latency, idle RSS and CPU.

Runs the real agent (`python -m smartserver_agent`) against its own mosquitto (TLS)
and a private system bus with the fake logind, all from script.harness:

    .venv/bin/python benchmarks/agent.py [--runs 30] [--idle 20]

The fake logind stamps each call with its own clock, so a latency is the time from
just before the test client publishes the command to logind receiving PowerOff.
The agent is restarted for every run (after PowerOff it stays SHUTTING_DOWN, as a
real server would be going down). To measure another path to PowerOff (e.g. Home
Assistant's switch), add a function like `shutdown_latency` that takes the same
`Rig` and returns seconds per run, and call it from `main`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from script.harness.agent import TEST_KEY, AgentProcess, agent_env
from script.harness.certs import make_certs
from script.harness.clients import Peer
from script.harness.mosquitto import Broker
from script.harness.procs import wait_for
from script.harness.protocol import load_protocol
from script.harness.system_bus import SystemBus

p = load_protocol()
SERVER = "bench1"
STATE = p.server_topic("home", SERVER, p.SERVER_STATE)
SYSTEM = p.server_topic("home", SERVER, p.SERVER_SYSTEM)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Rig:
    """A broker, a system bus with the fake logind, and a client watching the agent."""

    directory: Path
    broker: Broker
    bus: SystemBus
    peer: Peer

    def agent(self, name: str, **settings: str) -> AgentProcess:
        env = agent_env(self.directory / name, self.broker, self.bus, server_id=SERVER, **settings)
        return AgentProcess(env, self.directory / name)

    def wait_online(self, seen_before: int) -> None:
        self.peer.wait_for(
            lambda msgs: sum(m.topic == STATE and m.payload == b"ONLINE" for m in msgs) > seen_before
        )

    def online_count(self) -> int:
        return sum(m.payload == b"ONLINE" for m in self.peer.received(STATE))


@contextmanager
def rig(broker_config: str = "") -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="smartserver-bench-") as tmp:
        directory = Path(tmp)
        broker = Broker(directory / "broker", make_certs(directory / "pki"), extra_config=broker_config)
        bus = SystemBus(directory / "dbus")
        peer: Peer | None = None
        try:
            broker.start()
            bus.start()
            peer = Peer(broker).connect()
            peer.subscribe(STATE)
            yield Rig(directory, broker, bus, peer)
        finally:
            if peer is not None:
                peer.close()
            bus.stop()
            broker.stop()


def shutdown_latency(r: Rig, runs: int) -> list[float]:
    """Seconds from publishing a signed SHUTDOWN to logind's PowerOff, per run."""
    latencies = []
    for run in range(runs):
        agent = r.agent(f"latency{run}")
        before = r.online_count()
        agent.start()
        try:
            r.wait_online(before)
            # let the watcher's PUBACK for ONLINE be acknowledged first: its socket has
            # Nagle on, and a publish right behind it would wait for the delayed ACK
            time.sleep(0.2)
            calls = len(r.bus.calls("PowerOff"))
            payload = p.sign_command(TEST_KEY, SERVER, p.SHUTDOWN, int(time.time()))
            sent = time.time()
            r.peer.publish(SYSTEM, payload, qos=1)
            wait_for(lambda: len(r.bus.calls("PowerOff")) > calls, 10, "PowerOff")  # noqa: B023
            latencies.append(r.bus.calls("PowerOff")[-1]["time"] - sent)
        finally:
            agent.stop()
    return latencies


def proc_usage(pid: int) -> tuple[float, float]:
    """RSS in MiB and CPU seconds (user + system) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return rss_kib / 1024, cpu


def idle_usage(r: Rig, seconds: float) -> tuple[float, float, float]:
    """RSS (MiB) at the end, peak RSS and CPU % of the agent idling with default intervals."""
    agent = r.agent("idle")
    before = r.online_count()
    agent.start()
    try:
        r.wait_online(before)
        assert agent.proc is not None
        time.sleep(2)  # let the first network check and startup settle
        _, cpu_start = proc_usage(agent.proc.pid)
        start = time.monotonic()
        peak = 0.0
        while time.monotonic() - start < seconds:
            time.sleep(0.5)
            rss, cpu_end = proc_usage(agent.proc.pid)
            peak = max(peak, rss)
        elapsed = time.monotonic() - start
        return rss, peak, 100 * (cpu_end - cpu_start) / elapsed
    finally:
        agent.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    parser.add_argument(
        "--broker-nodelay", action="store_true", help="mosquitto with set_tcp_nodelay true (default false)"
    )
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"broker set_tcp_nodelay {str(args.broker_nodelay).lower()}"
    )
    with rig("set_tcp_nodelay true" if args.broker_nodelay else "") as r:
        latencies = [x * 1000 for x in shutdown_latency(r, args.runs)]
        print(
            f"SHUTDOWN -> PowerOff over {len(latencies)} runs: p50 {statistics.median(latencies):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, min {min(latencies):.1f}, max {max(latencies):.1f} ms"
        )
        rss, peak, cpu = idle_usage(r, args.idle)
        print(f"idle {args.idle:g} s (heartbeat 30 s): RSS {rss:.1f} MiB (peak {peak:.1f}), CPU {cpu:.2f} %")


if __name__ == "__main__":
    main()
