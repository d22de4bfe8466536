"""The node's MQTT client against a real mosquitto over TLS (and, for lost and resent
packets, over a plain link through a proxy that drops or repeats them)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from script.harness.board import NODE, Board, payloads, protocol, secrets_config, signed, wait_online
from script.harness.clients import Peer
from script.harness.mosquitto import Broker
from script.harness.proxy import PUBLISH, TO_BROKER, TO_CLIENT, MqttProxy, publish_fields

STATUS = protocol.node_topic("home", NODE, protocol.NODE_STATUS)
POWER = protocol.node_topic("home", NODE, protocol.NODE_POWER)
POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)


def test_topics_status_and_will(start_board: Callable[..., Board], peer: Peer, mosquitto: Broker) -> None:
    board = start_board(inputs={34: 1})
    peer.wait_topic(POWER)
    wait_online(peer)
    for msg in peer.received():
        topic = msg.topic
        if topic == protocol.login_answer("home", NODE):
            continue  # the config server's answer
        if topic.startswith("home/log/"):
            parsed = protocol.parse_log("home", topic)
            assert parsed is not None
            assert parsed.node == NODE
            assert parsed.level in protocol.LEVELS
        elif topic.startswith("home/login/"):
            assert protocol.parse_login_request("home", topic) == NODE
            protocol.parse_login_payload(msg.payload)
        else:
            leaf = topic.removeprefix(f"home/node/{NODE}/")
            assert protocol.parse_node_topic("home", topic, leaf) == NODE
            assert leaf in (protocol.NODE_STATUS, protocol.NODE_POWER, "info")
    info = json.loads(peer.received(protocol.node_topic("home", NODE, "info"))[0].payload)
    assert info["safe_mode"] is False
    assert info["reset_cause"] == "power on"
    assert retained_status(mosquitto) == b"ONLINE"
    # Pulling the plug: the broker publishes the Will, retained.
    assert board.proc is not None
    board.proc.send_signal(signal.SIGKILL)
    peer.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == STATUS][-1:] == [b"OFFLINE"], 30)
    assert retained_status(mosquitto) == b"OFFLINE"


def retained_status(broker: Broker) -> bytes:
    """The status the broker hands to a client that subscribes now."""
    late = Peer(broker).connect()
    try:
        late.subscribe(STATUS)
        msg = late.wait_topic(STATUS)
        assert msg.retain
        return bytes(msg.payload)
    finally:
        late.close()


def test_broker_restart_reconnects_and_resubscribes(
    start_board: Callable[..., Board], peer: Peer, mosquitto: Broker
) -> None:
    board = start_board()
    wait_online(peer)
    peer.close()
    mosquitto.restart()
    board.wait_output("MQTT connected", count=2, timeout=30)
    after = Peer(mosquitto).connect()
    try:
        after.subscribe("home/#")
        # The retained ONLINE of the new connection, and subscriptions that work again.
        assert after.wait_topic(STATUS).payload == b"ONLINE"
        after.publish(REFRESH, b"")
        after.wait_for(lambda msgs: any(m.topic == POWER for m in msgs))
        after.publish(POWER_SET, signed(protocol.PRESS))
        board.wait(lambda: len(board.pulses(25)) == 1, what="a PRESS after the restart")
    finally:
        after.close()


def test_logs_buffered_while_offline(
    start_board: Callable[..., Board], mosquitto: Broker, peer: Peer
) -> None:
    board = start_board(
        inputs={34: 1},
        log={"level": "info", "buffer_lines": 12},
        power_sense={"pin": 34, "debounce_ms": 30, "poll_ms": 5},
        mqtt={"broker_tries": 100},
    )
    # the first state, once debounced; a loaded machine may take a while to get there
    board.wait_output("power sense: OFF")
    peer.close()
    mosquitto.stop()
    board.wait_output("MQTT connection lost")
    # 30 state changes while offline: 30 info lines for a 12-line buffer.
    for i in range(30):
        board.set_input(34, i % 2)
        board.wait_output("power sense: ", count=i + 2)
    board.wifi(False)  # hold the node back until HA's side listens again
    mosquitto.start()
    after = Peer(mosquitto).connect()
    try:
        after.subscribe("home/log/#")
        board.wifi(True)
        dropped = protocol.log_topic("home", "warning", NODE)
        after.wait_for(lambda msgs: any(b"log buffer full" in m.payload for m in msgs), 30)
        time.sleep(1)
        info = payloads(after, protocol.log_topic("home", "info", NODE))
        warnings = payloads(after, dropped)
        # The newest state change made it; the oldest info lines were dropped first.
        sense = [line for line in info if line.startswith("power sense: ")]
        assert sense[-1] == "power sense: OFF"
        assert 0 < len(sense) < 30
        notice = next(line for line in warnings if "log buffer full" in line)
        assert "info" in notice
        assert "warning" not in notice.split("(")[1]
        offline_warnings = [line for line in warnings if "MQTT connection" in line]
        assert offline_warnings
    finally:
        after.close()


def test_broker_first_then_wifi(make_board: Callable[..., Board], mosquitto: Broker) -> None:
    board = make_board(mqtt={"broker_tries": 2, "backoff_max_s": 1})
    mosquitto.stop()
    board.boot()
    board.wait_output("reconnecting WiFi", timeout=30)
    out = board.output()
    before = out[: out.index("reconnecting WiFi")]
    assert before.count("MQTT connection to 127.0.0.1") == 2
    board.wait(lambda: board.count_events("wlan", "connect", "lab") >= 2, what="WiFi reconnect")
    assert board.count_events("wlan", "disconnect") >= 1


@pytest.mark.parametrize(
    ("secrets", "error"),
    [
        ({"ca": "wrong.pem"}, "not correctly signed by the trusted CA"),
        ({"server_hostname": "mqtt.elsewhere"}, "does not match with the expected CN"),
        ({"password": "wrong"}, "broker refused: not authorized"),
    ],
)
def test_connection_refused_when_unverified(
    make_board: Callable[..., Board], mosquitto: Broker, secrets: dict[str, str], error: str
) -> None:
    board = make_board(secrets=secrets_config(mosquitto, **secrets))
    (board.flash / "wrong.pem").write_text(mosquitto.certs.wrong_ca.read_text())
    board.boot()
    board.wait_output(error, count=2)
    assert "MQTT connected" not in board.output()


def test_oversized_messages_are_skipped(start_board: Callable[..., Board], peer: Peer) -> None:
    board = start_board(mqtt={"max_msg": 2048})
    peer.publish(POWER_SET, b"\xff" * 50_000)  # not even UTF-8
    board.wait_output(f"dropped a message of 50000 bytes on {POWER_SET} (limit 2048)")
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="a PRESS after the oversized message")
    assert board.running


def test_node_id_defaults_to_the_chip_id(start_board: Callable[..., Board], peer: Peer) -> None:
    # machine.unique_id() of the shim: 240ac4a1b2c3 (SHIM_CHIP_ID)
    start_board(node_id=None)
    status = protocol.node_topic("home", "240ac4a1b2c3", protocol.NODE_STATUS)
    assert peer.wait_topic(status).payload == b"ONLINE"
    assert protocol.login_answer("home", "240ac4a1b2c3") in {m.topic for m in peer.received()}


@pytest.fixture
def faulty_link(mosquitto: Broker) -> Iterator[Callable[[Callable[[str, bytes], list[bytes]]], MqttProxy]]:
    """A plain MQTT link to the broker that drops or repeats packets as told."""
    proxies: list[MqttProxy] = []

    def make(hook: Callable[[str, bytes], list[bytes]]) -> MqttProxy:
        proxies.append(MqttProxy(mosquitto.port, hook))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def _plain_secrets(mosquitto: Broker, proxy: MqttProxy) -> dict[str, object]:
    return secrets_config(mosquitto, port=proxy.port, insecure_plain_mqtt=True)


def test_unacknowledged_publish_is_resent_with_dup(
    make_board: Callable[..., Board],
    config_server: Callable[[dict[str, object]], object],
    peer: Peer,
    mosquitto: Broker,
    faulty_link: Callable[[Callable[[str, bytes], list[bytes]]], MqttProxy],
) -> None:
    """The broker never got the first log line (lost on the way): the node sends it again,
    same packet id, DUP set, until it is acknowledged; HA gets the line once."""
    dropped: list[tuple[str, int]] = []

    def lose_first_log_line(direction: str, packet: bytes) -> list[bytes]:
        if direction == TO_BROKER and packet[0] >> 4 == PUBLISH and not dropped:
            topic, qos, _dup, pid = publish_fields(packet)
            if qos == 1 and topic.startswith("home/log/"):
                dropped.append((topic, pid))
                return []
        return [packet]

    proxy = faulty_link(lose_first_log_line)
    config_server({})
    board = make_board(secrets=_plain_secrets(mosquitto, proxy))
    board.boot()
    board.wait(lambda: bool(dropped), what="the first log line")
    topic, pid = dropped[0]
    board.wait(
        lambda: (topic, 1, True, pid) in proxy.publishes(TO_BROKER, topic),
        timeout=20,
        what="the line resent with DUP",
    )
    sent = [p for p in proxy.publishes(TO_BROKER, topic) if p[3] == pid]
    assert sent == [(topic, 1, False, pid), (topic, 1, True, pid)]
    # the resent packet carried the same line: HA has it exactly once
    peer.wait_topic(topic)
    time.sleep(0.5)
    texts = [m.payload for m in peer.received(topic)]
    assert len(texts) == len(set(texts))


def test_repeated_delivery_is_handled_once(
    start_board: Callable[..., Board],
    peer: Peer,
    mosquitto: Broker,
    faulty_link: Callable[[Callable[[str, bytes], list[bytes]]], MqttProxy],
) -> None:
    """A QoS 1 command the broker resends (DUP, same id) reaches the relay once, and the
    repeat is not mistaken for a replay."""

    def repeat_commands(direction: str, packet: bytes) -> list[bytes]:
        if direction == TO_CLIENT and packet[0] >> 4 == PUBLISH:
            topic, qos, dup, _pid = publish_fields(packet)
            if topic == POWER_SET and qos == 1 and not dup:
                return [packet, bytes([packet[0] | 0x08]) + packet[1:]]
        return [packet]

    proxy = faulty_link(repeat_commands)
    board = start_board(secrets=_plain_secrets(mosquitto, proxy))
    board.wait_commands()
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the PRESS pulse")
    delivered = proxy.publishes(TO_CLIENT, POWER_SET, forwarded=True)
    assert [(qos, dup) for _t, qos, dup, _p in delivered] == [(1, False), (1, True)]
    assert delivered[0][3] == delivered[1][3]
    time.sleep(1)
    assert len(board.pulses(25)) == 1
    assert "refused" not in board.output()
