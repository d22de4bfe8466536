"""MicroPython image updates (issue 17) on the unix-port node: the esp32.Partition shim,
the harness's bootloader model, real mosquitto, and the smartserver-node client library."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from smartserver_node.client import Node, NodeError, signed_command
from smartserver_node.mgmt_framing import chunk_payload, image_arg

from script.harness import esp_image
from script.harness.board import KEY, NODE, Board, ConfigServer
from script.harness.bootloader import esp32_shim
from script.harness.mosquitto import Broker

from .test_mgmt import _firmware, connection

SHIM = esp32_shim()
TRIAL = {"confirm_s": 2, "trial_s": 60}
# The 32-bit port's heap (docs/performance.md): an image transfer passes at 100K with
# 1-2 KB to spare (the memory scenario, script/harness/memory.py, holds that); these
# tests are about the install, not the heap, and one failed at 100K in a full run.
HEAP = "112K"
# Several transfers in a row (a files update, then an image; ten refused images) still
# ran out of heap at 100K and 104K now and then: image.py, the management module and
# the esp32 shim (5 KB, C on a board) are resident meanwhile. Not lowered.
BUSY_HEAP = "112K"


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


def test_an_image_that_panics_at_boot_is_rolled_back(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP, mgmt=TRIAL)
    image = esp_image.build("v1.26.0", 100 * 1024, crash=True)
    result = install(board, node, image)
    assert "rolled back MicroPython image 1.26.0" in result["error"]
    # it booted once (and panicked), then the bootloader aborted it and went back
    assert board.booted == ["ota_0", "ota_1", "ota_0"]
    assert board.otadata()[0] == (2, SHIM.ABORTED)
    assert "this image panics at boot" in board.output()
    info = node.info()
    assert info["image"] == {
        "sha256": hashlib.sha256(image).hexdigest(),
        "version": "1.26.0",
        "result": "rolled back",
    }
    assert "MicroPython image 1.26.0 rolled back: the bootloader started ota_0, not ota_1" in board.output()
    assert not (board.flash / "img_pending.json").exists()


def test_an_image_never_healthy_within_trial_s_is_rolled_back(
    make_board: Callable[..., Board], config_server: Callable[..., ConfigServer], node: Node
) -> None:
    server = config_server({})
    board = make_board(heapsize=HEAP, mgmt={"confirm_s": 2, "trial_s": 8})
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    server.answer = False  # the new image runs, but HA's configuration never comes
    result = install(board, node, esp_image.build("v1.26.0", 64 * 1024))
    assert "rolled back MicroPython image 1.26.0" in result["error"], board.output()[-3000:]
    assert "MicroPython image 1.26.0 did not become healthy: rolling back" in board.output()
    # never marked valid: the reset after trial_s made the bootloader abort it
    assert board.booted == ["ota_0", "ota_1", "ota_0"]
    assert board.otadata()[0] == (2, SHIM.ABORTED)
    assert board.partition("ota_0")[:24] == esp_image.build("v1.25.0")[:24]


def test_an_image_sent_in_one_burst_keeps_the_connection(
    start_board: Callable[..., Board], node: Node
) -> None:
    """1.5 MB sent without pacing (this broker queues without limit): the node reads for
    seconds with its PINGRESP queued behind the chunks. A late PINGRESP behind incoming
    packets is no lost connection (that reconnect would lose the queued chunks)."""
    board = start_board(heapsize=HEAP, mgmt=TRIAL, app_size=0x180000)
    image = esp_image.build("v1.26.0", 0x170000)
    pieces = _pieces(image)
    nonce = node.send("image", image_arg(image, "1.26.0"))
    for seq, piece in enumerate(pieces):
        kind = "ok" if seq == len(pieces) - 1 else "more"
        node.client.publish(node.data_topic, chunk_payload(nonce, seq, kind, piece), qos=1)
    replies = list(node.replies(nonce, timeout=60))
    assert replies[-1].body.decode() == hashlib.sha256(image).hexdigest()
    assert len(replies) == 1 + len(image) // (64 * 1024)  # "written" every 64 KB, then ok
    board.wait_output("MicroPython image 1.26.0 confirmed", timeout=60)
    assert "(connect 2)" not in board.output()  # one connection all along, each boot
    assert board.booted == ["ota_0", "ota_1"]


def _refused(
    board: Board, node: Node, arg: str, chunks: list[bytes], complete: bool = True, skip: int = -1
) -> str:
    """Send an image command and its chunks (`skip`: one seq left out); the error."""
    nonce = node.send("image", arg)
    for seq, piece in enumerate(chunks):
        kind = "ok" if complete and seq == len(chunks) - 1 else "more"
        if seq != skip:
            node.client.publish(node.data_topic, chunk_payload(nonce, seq, kind, piece), qos=1)
    with pytest.raises(NodeError) as err:
        list(node.replies(nonce, timeout=30))
    return str(err.value)


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + 1400] for i in range(0, len(data), 1400)]


def test_refused_images_leave_the_boot_partition(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=BUSY_HEAP, mgmt={"idle_s": 2})
    image = esp_image.build("v1.26.0", 20 * 1024)
    otadata = board.otadata()
    wrong = bytearray(image)
    wrong[5000] ^= 0xFF
    # a chunk corrupted on the way: the hash of what arrived differs
    assert "checksum mismatch" in _refused(board, node, image_arg(image, "1.26.0"), _pieces(bytes(wrong)))
    # a SHA-256 that is not the image's
    arg = "0" * 64 + f"\n{len(image)}\n1.26.0"
    assert "checksum mismatch" in _refused(board, node, arg, _pieces(image))
    # fewer bytes than announced, and more
    arg = f"{hashlib.sha256(image).hexdigest()}\n{len(image) + 10}\n1.26.0"
    assert f"({len(image)} bytes)" in _refused(board, node, arg, _pieces(image))
    arg = f"{hashlib.sha256(image).hexdigest()}\n{len(image) - 10}\n1.26.0"
    assert "size mismatch" in _refused(board, node, arg, _pieces(image))
    # bigger than the partition, or empty
    assert "does not fit the 262144-byte partition ota_1" in _refused(
        board, node, f"{'0' * 64}\n{262145}\n1.26.0", []
    )
    assert "does not fit" in _refused(board, node, f"{'0' * 64}\n0\n1.26.0", [])
    # valid data whose hash matches, but not an app image: set_boot() refuses it
    junk = bytes(range(256)) * 40
    assert "ESP_ERR_OTA_VALIDATE_FAILED" in _refused(board, node, image_arg(junk, "1.26.0"), _pieces(junk))
    # the sender vanishes mid-transfer: abandoned after idle_s
    assert "no data for 2 s" in _refused(board, node, image_arg(image, "1.26.0"), _pieces(image)[:3], False)
    # a chunk out of order
    arg = image_arg(image, "1.26.0")
    assert "chunk 2 out of order (expected 1)" in _refused(board, node, arg, _pieces(image), skip=1)
    assert board.otadata() == otadata  # set_boot() never ran (or refused): ota_0 boots
    assert board.booted == ["ota_0"]
    assert "image" not in node.info()
    assert not (board.flash / "img_pending.json").exists()


def test_unsigned_and_replayed_image_commands_are_refused(
    start_board: Callable[..., Board], node: Node, mosquitto: Broker
) -> None:
    board = start_board(heapsize=HEAP, mgmt={"idle_s": 2})
    otadata = board.otadata()
    arg = image_arg(esp_image.build("v1.26.0", 8 * 1024), "1.26.0")
    unsigned = json.dumps({"cmd": "image", "arg": arg, "ts": int(time.time()), "nonce": "00ab"})
    node.send_payload("00ab", unsigned)
    with pytest.raises(NodeError, match="refused: unsigned"):
        list(node.replies("00ab"))
    with (
        Node(connection(mosquitto), "home", NODE, "not the key", timeout=10) as wrong,
        pytest.raises(NodeError, match="bad signature"),
    ):
        list(wrong.replies(wrong.send("image", arg)))
    nonce, payload = signed_command(KEY, NODE, "image", arg)
    node.send_payload(nonce, payload)
    node.send_payload(nonce, payload)  # the same signed message again
    with pytest.raises(NodeError, match="refused: replayed"):
        list(node.replies(nonce))
    board.wait_output("transfer of an image for ota_1 abandoned: no data for 2 s")
    assert board.otadata() == otadata
    assert board.booted == ["ota_0"]


def test_a_build_without_ota_partitions_refuses_images(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP, partitions="factory")
    with pytest.raises(NodeError, match="no OTA partition: flash an OTA build over USB first"):
        node.image(esp_image.build("v1.26.0", 8 * 1024))
    assert board.booted == ["factory"]
    assert "image" not in node.info()


def _in_thread(work: Callable[[], object]) -> threading.Thread:
    worker = threading.Thread(target=work)
    worker.start()
    return worker


def test_one_update_on_trial_at_a_time(start_board: Callable[..., Board], node: Node, tmp_path: Path) -> None:
    board = start_board(heapsize=BUSY_HEAP, mgmt={"confirm_s": 5, "trial_s": 60})
    # the files' update on trial: no image
    worker = _in_thread(lambda: node.update(_firmware(tmp_path, "0.2.0"), confirm_timeout=60))
    board.wait(lambda: len(board.boots) == 2, what="the reboot into firmware 0.2.0")
    board.wait_commands(count=2)
    assert (board.flash / "fw_pending.json").exists()
    with pytest.raises(NodeError, match="refused: a firmware update is on trial"):
        node.image(esp_image.build("v1.26.0", 8 * 1024))
    board.wait(lambda: not worker.is_alive(), timeout=60, what="the update's confirmation")
    assert board.booted == ["ota_0", "ota_0"]
    # the image on trial: no files' update
    image = esp_image.build("v1.26.0", 8 * 1024)
    worker = _in_thread(lambda: node.image(image, confirm_timeout=60))
    board.wait(lambda: len(board.boots) == 3, what="the reboot into the image")
    board.wait_commands(count=3)
    # the retained info may still be the one boot 2 published
    board.wait(lambda: node.info().get("image", {}).get("result") == "trial", what="the info of boot 3")
    with pytest.raises(NodeError, match="refused: a MicroPython image is on trial"):
        node.call("update", "0" * 64)
    with pytest.raises(NodeError, match="refused: an image is already on trial"):
        node.image(image)
    board.wait(lambda: not worker.is_alive(), timeout=60, what="the image's confirmation")
    assert node.info()["image"]["result"] == "confirmed"
    assert board.booted == ["ota_0", "ota_0", "ota_1"]
