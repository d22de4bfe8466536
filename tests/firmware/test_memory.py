"""The node's heap on the 32-bit bed (docs/performance.md#firmware)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from script.harness.board import NODE, Board, payloads, protocol, signed, wait_online
from script.harness.clients import Peer
from script.harness.memory import SCENARIO, memory_run
from script.harness.mosquitto import Broker

POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
INFO = protocol.node_topic("home", NODE, "info")
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)
MGMT_CMD = protocol.node_topic("home", NODE, protocol.NODE_MGMT_CMD)
MGMT_REPLY = protocol.node_topic("home", NODE, protocol.NODE_MGMT_REPLY)


def info(peer: Peer) -> dict[str, Any]:
    before = len(peer.received(INFO))
    peer.publish(REFRESH, b"")
    peer.wait_for(lambda msgs: sum(m.topic == INFO for m in msgs) > before)
    return dict(json.loads(peer.received(INFO)[-1].payload))


def test_collections_come_before_the_heap_fills(start_board: Callable[..., Board], peer: Peer) -> None:
    board = start_board()
    wait_online(peer)
    # churn: every refusal allocates a payload, a parse and a log line
    for batch in range(1, 5):
        for i in range(50):
            peer.publish(POWER_SET, json.dumps({"cmd": "PRESS", "pad": "x" * 200, "n": i}))
        board.wait_output("refused: unsigned", 30, count=50 * batch)
    figures = info(peer)
    heap = figures["mem_alloc"] + figures["mem_free"]
    # gc.threshold collects once a quarter of the free heap was allocated: the heap in
    # use (garbage included, sampled every 100 ms) stays well below its size
    assert figures["mem_peak"] < figures["mem_alloc"] + figures["mem_free"] // 2, figures
    assert figures["mem_peak"] < heap * 0.9


def test_a_refused_management_command_does_not_load_the_module(
    start_board: Callable[..., Board], peer: Peer
) -> None:
    start_board()
    wait_online(peer)
    before = info(peer)["mem_alloc"]
    bad = json.loads(signed("ls", key="not the node's key"))
    peer.publish(MGMT_CMD, json.dumps(bad))
    peer.publish(MGMT_CMD, json.dumps({"cmd": "ls", "nonce": "ab12", "pad": "x" * 400}))
    peer.wait_for(lambda msgs: sum(m.topic == MGMT_REPLY for m in msgs) >= 2)
    assert payloads(peer, MGMT_REPLY) == [
        f"{bad['nonce']} 0 err\nrefused: bad signature",
        "ab12 0 err\nrefused: unsigned",
    ]
    # the management module (7 KB of bytecode) stays on flash; the margin is for the
    # refusals' log lines, at times still pending (1.2 KB seen once)
    assert info(peer)["mem_alloc"] < before + 2048


def test_modules_in_romfs_run_where_mpy_files_do_not_fit(
    make_board: Callable[..., Board], config_server: Callable[[dict[str, Any]], object], peer: Peer
) -> None:
    # With the modules in ROMFS (or frozen) their bytecode runs in place from flash:
    # at 64K the node runs and pulses the relay; with .mpy files on the filesystem
    # their bytecode alone leaves no room for TLS (docs/performance.md#firmware).
    config_server({})
    on_flash = make_board(heapsize="64K", config={"boot_wait_s": 10})
    on_flash.boot()
    on_flash.wait(lambda: "MemoryError" in on_flash.output(), 60, "a MemoryError")
    on_flash.stop()
    in_rom = make_board(heapsize="64K", romfs=True, config={"boot_wait_s": 10})
    in_rom.boot()
    in_rom.wait_output("running:", timeout=60)
    in_rom.wait_commands()
    peer.publish(POWER_SET, signed(protocol.PRESS))
    in_rom.wait_output("PRESS: button pulsed", timeout=20)
    figures = info(peer)
    assert figures["mem_peak"] < 64 * 1024
    assert "MemoryError" not in in_rom.output()


def test_the_whole_scenario_runs_in_64k_with_the_modules_in_romfs(
    make_board: Callable[..., Board], mosquitto: Broker, tmp_path: Path
) -> None:
    # Boot, flood, PRESS/HOLD, an 8 KB put/get, hostile payloads, an update that rolls
    # back and a 200 KB image: the .mpy build needs 100K for this (benchmarks/firmware.py).
    # Management fits because its names are interned at boot (bootstate.load_names):
    # loaded later they needed the name pool to double into 4.5 KB in one piece, and a
    # 64K heap had no such piece left by then.
    board = make_board(heapsize="64K", romfs=True, **SCENARIO)
    rows = memory_run(board, mosquitto, tmp_path / "fw")
    assert [result for _, result, _, _ in rows] == ["ok"] * 7, (rows, board.output()[-4000:])
    assert "MemoryError" not in board.output()


def test_at_56k_with_romfs_the_node_boots_takes_a_flood_and_pulses_the_relay(
    make_board: Callable[..., Board], mosquitto: Broker, tmp_path: Path
) -> None:
    # An ESP32's 56 KB: boot with TLS and NTP, a log flood and PRESS/HOLD fit; the
    # management phases do not yet (docs/performance.md#firmware). Boot fits because
    # the on-demand modules' names go in with the heap collected before each
    # (bootstate.load_names): the name pool's next piece then finds the heap's top free.
    board = make_board(heapsize="56K", romfs=True, **SCENARIO)
    rows = memory_run(board, mosquitto, tmp_path / "fw", count=3)
    # the console's tail: a phase that times out says why only there (a reconnect, a crash)
    assert [result for _, result, _, _ in rows] == ["ok"] * 3, (rows, board.output()[-4000:])
    assert "MemoryError" not in board.output()
