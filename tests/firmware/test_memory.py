"""The node's heap on the 32-bit bed (docs/performance.md#firmware)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.harness.clients import Peer

from .board import NODE, Board, protocol, wait_online

POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
INFO = protocol.node_topic("home", NODE, "info")
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)


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
