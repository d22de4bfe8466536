"""MicroPython image updates (issue 17) on the unix-port node: the esp32.Partition shim,
the harness's bootloader model, real mosquitto, and the smartserver-node client library."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from smartserver_node.client import Node, NodeError

from script.harness import esp_image
from script.harness.board import KEY, NODE, Board
from script.harness.bootloader import esp32_shim
from script.harness.mosquitto import Broker

from .test_mgmt import connection

SHIM = esp32_shim()
TRIAL = {"confirm_s": 2, "trial_s": 60}
HEAP = "128K"


@pytest.fixture
def node(mosquitto: Broker) -> Iterator[Node]:
    """A management client for node1 with its key."""
    with Node(connection(mosquitto), "home", NODE, KEY, timeout=10) as client:
        yield client


def install(board: Board, node: Node, image: bytes, timeout: float = 90) -> dict[str, Any]:
    """Run node.image() (the node reboots meanwhile: the board is polled here); its info,
    or the NodeError it raised under "error"."""
    result: dict[str, Any] = {}
    progress: list[tuple[int, int]] = []

    def run() -> None:
        try:
            result.update(node.image(image, lambda d, t: progress.append((d, t)), confirm_timeout=timeout))
        except NodeError as err:
            result["error"] = str(err)

    worker = threading.Thread(target=run)
    worker.start()
    board.wait(lambda: not worker.is_alive(), timeout=timeout + 30, what="the image install")
    worker.join()
    result["progress"] = progress
    return result


def test_an_image_is_installed_and_confirmed(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP, mgmt=TRIAL)
    before = node.info()
    assert before["micropython"] == "1.25.0"
    assert "image" not in before
    image = esp_image.build("v1.26.0", 200 * 1024)
    digest = hashlib.sha256(image).hexdigest()
    info = install(board, node, image)
    assert "error" not in info, info
    assert info["image"] == {"sha256": digest, "version": "1.26.0", "result": "confirmed"}
    # "written" every 64 KB while streaming, then the whole
    assert [d for d, _ in info["progress"]] == [65536, 131072, 196608, len(image)]
    assert board.booted == ["ota_0", "ota_1"]
    assert board.partition("ota_1")[: len(image)] == image
    # set_boot() chose ota_1 (seq 2), the bootloader ran it once, the node confirmed it
    assert board.otadata()[0] == (2, SHIM.VALID)
    board.wait_output("MicroPython image 1.26.0 confirmed")
    # confirmed for good: the next reset boots it again
    board.stop()
    board.boot()
    board.wait_commands(count=2)
    assert board.booted[-1] == "ota_1"
    assert node.info()["image"]["result"] == "confirmed"
