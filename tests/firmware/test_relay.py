"""Power commands: signed, timed on the node, capped; everything else refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from script.harness.board import FIRMWARE, KEY, NODE, Board, protocol, secrets_config, signed
from script.harness.clients import Peer
from script.harness.micropython import MicroPython
from script.harness.mosquitto import Broker
from script.harness.procs import udp_listener
from script.harness.proxy import SilentProxy

POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
MP_SIGN = Path(__file__).with_name("mp_sign.py")


def test_signature_matches_protocol_module(micropython: MicroPython, tmp_path: Path) -> None:
    cases = [
        ["k", NODE, "PRESS", 1763780000, "9f2c4e1a7b3d5e60", ""],
        ["x" * 64, "srv-1", "HOLD", 1, "00", "arg with spaces"],
        [
            "a much longer key than the sha256 block size of sixty four bytes " * 3,
            NODE,
            "HOLD",
            2**31 + 5,
            "ff",
            "",
        ],
        ["schlüssel ✓", "n_2", "PRESS", 0, "abc", "ü"],
    ]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = micropython.run(MP_SIGN, str(FIRMWARE), str(tmp_path / "cases.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    expected = [protocol.command_signature(*case) for case in cases]
    assert out.stdout.split() == expected


def test_press_and_hold_pulses(make_board: Callable[..., Board], peer: Peer) -> None:
    board = make_board(relay={"max_on_ms": 6000})
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the PRESS pulse")
    peer.publish(POWER_SET, signed(protocol.HOLD))
    board.wait(lambda: len(board.pulses(25)) == 2, what="the HOLD pulse")
    press, hold = board.pulses(25)
    # The shim stamps levels with a wall clock: allow it a millisecond.
    assert 149 <= press.ms < 400
    assert 4499 <= hold.ms < 4800
    board.wait_output("HOLD: button pulsed for 4500 ms")


def test_relay_on_time_is_capped(make_board: Callable[..., Board], peer: Peer) -> None:
    board = make_board(relay={"hold_ms": 3500, "max_on_ms": 800})
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    peer.publish(POWER_SET, signed(protocol.HOLD))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the HOLD pulse")
    assert 799 <= board.pulses(25)[0].ms < 1200
    # The pin was driven inactive at boot (boot.py, then the relay) before any pulse.
    first = next(words for _, words in board.event_lines() if words[:2] == ["pin", "25"])
    assert first == ["pin", "25", "mode", "out", "0"]


def test_refused_commands(make_board: Callable[..., Board], peer: Peer) -> None:
    board = make_board()
    # A retained command reaches the node when it subscribes, flagged retained.
    peer.publish(POWER_SET, signed(protocol.PRESS), retain=True)
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    board.wait_output("refused: retained")
    peer.publish(POWER_SET, b"", retain=True)  # clear it from the broker
    now = int(time.time())
    good = signed(protocol.PRESS)
    refused = {
        "stale": signed(protocol.PRESS, ts=now - 120),
        "unsigned": json.dumps({"cmd": "PRESS", "ts": now, "nonce": "00aa"}),
        "bad signature": signed(protocol.PRESS, key="the wrong key"),
        "for another node": signed(protocol.PRESS, node="node2"),
        "not JSON": "PRESS",
        "too large": json.dumps({"cmd": "PRESS", "pad": "x" * 600}),
        "unknown command": signed("EXPLODE"),
    }
    for payload in refused.values():
        peer.publish(POWER_SET, payload)
    peer.publish(POWER_SET, good)
    peer.publish(POWER_SET, good)  # a duplicate: replayed
    board.wait_output("button pulsed")
    board.wait_output("refused: replayed")
    out = board.output()
    for reason in (
        "retained",
        "stale",
        "unsigned",
        "bad signature",
        "not JSON",
        "too large",
        "unknown command",
    ):
        assert f"refused: {reason}" in out, reason
    assert out.count("refused: bad signature") == 2  # wrong key, and signed for node2
    time.sleep(0.5)
    assert len(board.pulses(25)) == 1


def test_power_sense_debounced_and_refreshed(
    make_board: Callable[..., Board], peer: Peer, mosquitto: Broker
) -> None:
    topic = protocol.node_topic("home", NODE, protocol.NODE_POWER)
    board = make_board(power_sense={"pin": 34, "active": 0, "debounce_ms": 300, "poll_ms": 10})
    board.set_input(34, 1)  # LED off: optocoupler open, pulled up
    board.boot()
    assert peer.wait_topic(topic).payload == b"OFF"
    # A bounce shorter than the debounce time changes nothing.
    for level in (0, 1, 0, 1):
        board.set_input(34, level)
        time.sleep(0.05)
    board.set_input(34, 0)
    peer.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == topic] == [b"OFF", b"ON"])
    peer.publish(protocol.node_topic("home", NODE, protocol.NODE_REFRESH), b"")
    peer.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == topic] == [b"OFF", b"ON", b"ON"])
    # Retained on the broker: a client that connects later gets the state at once.
    late = Peer(mosquitto).connect()
    try:
        late.subscribe(topic)
        retained = late.wait_topic(topic)
        assert (retained.payload, retained.retain) == (b"ON", True)
    finally:
        late.close()


def test_replay_after_a_reboot_is_refused(start_board: Callable[..., Board], peer: Peer) -> None:
    # The nonce table is in RAM: a reboot must not open a window for captured commands.
    board = start_board()
    press = signed(protocol.PRESS)
    ahead_ts = int(time.time()) + 5  # from a sender whose clock runs ahead
    ahead = signed(protocol.PRESS, ts=ahead_ts)
    peer.publish(POWER_SET, press)
    board.wait_output("button pulsed")
    peer.publish(POWER_SET, ahead)
    board.wait_output("button pulsed", count=2)
    board.stop()
    board.boot()
    board.wait_output("running:", count=2)
    board.wait_commands(count=2)
    peer.publish(POWER_SET, press)
    peer.publish(POWER_SET, ahead)
    board.wait_output("refused: signed before the node's last boot", count=2)
    while int(time.time()) <= ahead_ts:
        time.sleep(0.1)
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait_output("button pulsed", count=3)
    assert len(board.pulses(25)) == 3


def test_hold_ends_on_time_while_a_handshake_blocks_the_loop(
    make_board: Callable[..., Board], peer: Peer, mosquitto: Broker
) -> None:
    # On the ESP32 a TLS handshake step computes in C for a second or more and stalls
    # every task and every machine.Timer callback (they are only scheduled): the link
    # drops during a HOLD and the reconnect's handshake blocks for 5 s. The HOLD must
    # still end on time (docs/firmware.md, "Relay timing").
    proxy = SilentProxy(mosquitto.tls_port)
    try:
        board = make_board(
            secrets=secrets_config(mosquitto, port=proxy.port),
            relay={"hold_ms": 4500, "max_on_ms": 6000},
            mqtt={"keepalive_s": 3, "timeout_s": 3, "backoff_max_s": 1},
        )
        board.env["SHIM_SLOW_HANDSHAKE"] = "1"
        board.boot()
        board.wait_output("running:")
        board.wait_commands()
        (board.inputs / "handshake_block_ms").write_text("5000")
        peer.publish(POWER_SET, signed(protocol.HOLD))
        board.wait(lambda: board.count_events("pin", "25", "value", "1") == 1, what="the HOLD to start")
        proxy.silence()  # no PINGRESP: the node drops the link and reconnects
        board.wait(lambda: board.count_events("tls", "done") == 1, timeout=30, what="the handshake")
        (hold,) = board.pulses(25)
        assert 4499 <= hold.ms < 4800
        # the handshake waited for the end of the HOLD: nothing could have ended it meanwhile
        blocked_at = next(stamp for stamp, words in board.event_lines() if words[:2] == ["tls", "blocked"])
        assert blocked_at >= hold.end_ns
    finally:
        proxy.close()


def test_default_hold_forces_off_and_a_long_press_is_refused(
    make_board: Callable[..., Board], peer: Peer
) -> None:
    # Boards force off after more than 4 s, some after more than 6 s: HOLD is 8 s by
    # default. A PRESS near those times could force a server off: refused.
    board = make_board()
    board.board["relay"] = {"pin": 25, "active": 1, "press_ms": 3000}
    board.write_config()
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    assert "relay.press_ms 3000 refused (1-2000 ms): 150 used" in board.output()
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the PRESS pulse")
    peer.publish(POWER_SET, signed(protocol.HOLD))
    board.wait(lambda: len(board.pulses(25)) == 2, timeout=20, what="the HOLD pulse")
    press, hold = board.pulses(25)
    assert 149 <= press.ms < 400
    assert 7999 <= hold.ms < 8300  # below the default max_on_ms of 9000


def test_wol_sends_the_magic_packet(make_board: Callable[..., Board], peer: Peer) -> None:
    """A signed WOL: the node sends 6 x 0xFF and the MAC 16 times to the address in its arg (loopback)."""
    listener = udp_listener()
    port = listener.getsockname()[1]
    try:
        board = make_board()
        board.boot()
        board.wait_output("running:")
        board.wait_commands()
        now = int(time.time())
        mac = "02:00:5E:10:00:01"

        def wol(arg: str, **kwargs: Any) -> str:
            return str(
                protocol.sign_command(kwargs.get("key", KEY), NODE, protocol.WOL, kwargs.get("ts", now), arg)
            )

        good = wol(protocol.wol_arg(mac, "127.0.0.1", port))
        for hostile in (
            wol(f"02:00:5E:10:00 127.0.0.1 {port}"),  # malformed MAC
            wol(f"{mac} 127.0.0.1 0"),
            wol("x" * 300),
            wol(f"{mac} 127.0.0.1 {port}", ts=now - 120),  # stale
            wol(f"{mac} 127.0.0.1 {port}", key="the wrong key"),
            json.dumps({"cmd": "WOL", "ts": now, "nonce": "00bb", "arg": f"{mac} 127.0.0.1 {port}"}),
        ):
            peer.publish(POWER_SET, hostile)
        peer.publish(POWER_SET, good)
        peer.publish(POWER_SET, good)  # replayed
        packet, _sender = listener.recvfrom(1024)
        assert packet == b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
        board.wait_output(f"WOL: magic packet for {mac} to 127.0.0.1:{port}")
        board.wait_output("refused: replayed")
        out = board.output()
        assert out.count("refused: WOL malformed") == 3
        for reason in ("stale", "bad signature", "unsigned"):
            assert f"refused: {reason}" in out, reason
        # one packet only, and no button pressed
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.recvfrom(1024)
        assert board.pulses(25) == []
    finally:
        listener.close()


def test_wol_only_node(make_board: Callable[..., Board], peer: Peer) -> None:
    """A node with a `wol` section and no relay takes WOL; PRESS and HOLD are refused, said in its log."""
    listener = udp_listener()
    port = listener.getsockname()[1]
    try:
        board = make_board(relay=None, power_sense=None, wol={})
        board.boot()
        board.wait_output("running: wol")
        board.wait_commands()
        mac = "02:00:5E:10:00:02"
        peer.publish(POWER_SET, signed(protocol.PRESS))
        peer.publish(POWER_SET, signed(protocol.HOLD))
        peer.publish(POWER_SET, signed(protocol.WOL, arg=protocol.wol_arg(mac, "127.0.0.1", port)))
        packet, _sender = listener.recvfrom(1024)
        assert packet == b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
        board.wait_output(f"WOL: magic packet for {mac} to 127.0.0.1:{port}")
        out = board.output()
        for cmd in ("PRESS", "HOLD"):
            assert f"power command refused: {cmd} needs a relay, and this node has none (WOL only)" in out
        assert board.pulses(25) == []
    finally:
        listener.close()
