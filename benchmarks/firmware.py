"""Firmware benchmark on MicroPython's unix port against a real mosquitto over TLS.

Prints:
- heap use under load (a log burst from 300 refused commands, a chunked config fetch of
  12 components, 20 PRESS commands), as the firmware reports it on its info topic
  (gc.mem_alloc() sampled every 100 ms), for several heap limits, and the smallest
  limit under which the whole load still succeeds;
- heap per phase of the whole scenario (script/harness/memory.py) with the modules as
  .mpy files on the filesystem (MEMORY_HEAPS) and in ROMFS (MEMORY_ROMFS_HEAPS);
- command-to-pulse latency: from publishing a signed PRESS to the relay pin going
  active in the pin shim's record, over the real broker (p50/p99).

Run: .venv/bin/python benchmarks/firmware.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))


from script.harness.board import (
    NODE,
    Board,
    ConfigServer,
    board_config,
    protocol,
    secrets_config,
    signed,
)
from script.harness.certs import make_certs
from script.harness.clients import Peer
from script.harness.memory import SCENARIO, memory_run, module_costs
from script.harness.micropython import micropython_port
from script.harness.mosquitto import Broker
from script.harness.ntp import NtpServer

POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
INFO = protocol.node_topic("home", NODE, "info")
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)
COMPONENTS: dict[str, Any] = {f"extra{i}": {"note": "x" * 250, "n": i} for i in range(11)}
COMPONENTS["relay"] = {"press_ms": 40}


def make_board(work: Path, broker: Broker, name: str, heapsize: str, romfs: bool = False) -> Board:
    return Board(
        micropython_port(),
        work / name,
        board_config(broker, config=SCENARIO["config"]),
        secrets_config(broker),
        broker.certs.ca_pem,
        heapsize=heapsize,
        reboot=False,
        romfs=romfs,
    )


def more_pulses_than(board: Board, count: int) -> Callable[[], bool]:
    """A wait condition: the relay has pulsed more than `count` times."""
    return lambda: len(board.pulses(25)) > count


def info(peer: Peer) -> dict[str, Any]:
    before = len(peer.received(INFO))
    peer.publish(REFRESH, b"")
    peer.wait_for(lambda msgs: sum(m.topic == INFO for m in msgs) > before)
    return dict(json.loads(peer.received(INFO)[-1].payload))


def load_run(work: Path, broker: Broker, heapsize: str) -> dict[str, Any] | None:
    """The load scenario under one heap limit; None if the firmware did not cope."""
    peer = Peer(broker).connect()
    board = make_board(work, broker, f"heap{heapsize}", heapsize)
    try:
        peer.subscribe("home/#")
        ConfigServer(peer, COMPONENTS)
        board.boot()
        board.wait_output("running: relay", timeout=30)
        board.wait_commands()  # a PRESS signed in the node's boot second is refused as older
        # A burst of junk commands: 300 refusals to log while commands keep coming.
        for i in range(300):
            peer.client.publish(POWER_SET, json.dumps({"cmd": "PRESS", "pad": i}), qos=0)
        for i in range(20):
            peer.publish(POWER_SET, signed(protocol.PRESS))
            board.wait(more_pulses_than(board, i), timeout=30, what=f"pulse {i + 1}")
        board.wait(lambda: board.output().count("refused: unsigned") >= 300, 30, "the burst")
        time.sleep(1)
        figures = info(peer)
        board.poll()
        if board.exits or not board.running:
            print(f"{heapsize:>10} failed: the firmware exited ({board.exits})")
            print(board.output()[-1500:])
            return None
        return figures
    except (TimeoutError, AssertionError) as err:
        print(f"{heapsize:>10} failed: {str(err).splitlines()[0]}")
        print(board.output()[-1500:])
        return None
    finally:
        board.stop()
        peer.close()


def latency(work: Path, broker: Broker, samples: int = 100) -> list[float]:
    peer = Peer(broker).connect()
    board = make_board(work, broker, "latency", "100K")
    # A 5 s window: the node accepts at most 32 commands per twice its window.
    board.board["relay"]["max_skew_s"] = 5
    board.write_config()
    try:
        peer.subscribe("home/#")
        ConfigServer(peer, {"relay": {"press_ms": 30}})
        board.boot()
        board.wait_output("running: relay", timeout=30)
        board.wait_commands()
        times = []
        for i in range(samples):
            sent = time.time_ns()
            peer.client.publish(POWER_SET, signed(protocol.PRESS), qos=1)
            board.wait(more_pulses_than(board, i), timeout=10, what="a pulse")
            times.append((board.pulses(25)[i].start_ns - sent) / 1e6)
            time.sleep(0.3)
        return times
    finally:
        board.stop()
        peer.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", make_certs(work / "pki"))
        broker.start()
        ntp = NtpServer().start()
        try:
            print("firmware under load (log burst of 300 lines, 12-component chunked config, 20 PRESS)")
            print(f"{'heap limit':>10} {'result':>8} {'peak alloc':>11} {'alloc now':>10} {'free now':>9}")
            smallest = None
            for heapsize in sys.argv[1:] or ("100K", "90K", "80K", "72K", "64K"):
                figures = load_run(work, broker, heapsize)
                if figures is None:
                    print(f"{heapsize:>10} {'failed':>8}")
                    continue
                smallest = heapsize
                print(
                    f"{heapsize:>10} {'ok':>8} {figures['mem_peak']:>11} "
                    f"{figures['mem_alloc']:>10} {figures['mem_free']:>9}"
                )
            print(f"smallest heap limit that coped: {smallest}")
            costs = module_costs(make_board(work, broker, "imports", "256K"))
            print("heap per module once imported:", ", ".join(f"{name} {size}" for name, size in costs))
            print("heap per phase (peak since the previous phase, live after it), 32-bit port")
            runs = [(heap, False) for heap in os.environ.get("MEMORY_HEAPS", "56K 64K 80K 100K").split()]
            runs += [(heap, True) for heap in os.environ.get("MEMORY_ROMFS_HEAPS", "56K 60K 64K").split()]
            for heapsize, romfs in runs:
                where = "romfs" if romfs else "mpy"
                board = make_board(work, broker, f"phases{heapsize}{where}", heapsize, romfs)
                board.board["mgmt"] = SCENARIO["mgmt"]
                board.write_config()
                board.reboot = True  # the update resets the node
                for name, result, peak, live in memory_run(board, broker, work / f"fw{heapsize}{where}"):
                    print(f"{heapsize:>6} {where:<5} {name:<42} {result:<8} {peak:>7} {live:>7}")
            times = latency(work, broker)
            print(
                f"command-to-pulse latency over TLS, {len(times)} PRESS: "
                f"p50 {statistics.median(times):.1f} ms, p99 {percentile(times, 99):.1f} ms, "
                f"max {max(times):.1f} ms"
            )
        finally:
            ntp.stop()
            broker.stop()


if __name__ == "__main__":
    main()
