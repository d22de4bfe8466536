"""The node's network on a bed as strict as the ESP32: a clock at 2000 after power-up,
links that go silent, a WiFi outage, a slow DNS server (docs/firmware.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from script.harness.board import NODE, Board, ConfigServer, protocol, secrets_config, wait_online
from script.harness.clients import Peer
from script.harness.micropython import POWER_UP, MicroPython
from script.harness.mosquitto import Broker
from script.harness.ntp import NTP_HOST
from script.harness.proxy import SilentProxy

INFO = protocol.node_topic("home", NODE, "info")
REFRESH = protocol.node_topic("home", NODE, protocol.NODE_REFRESH)
NO_NTP = "127.123.0.9"  # nothing answers there
CERT_TOO_NEW = "The certificate validity starts in the future"


@pytest.fixture
def silent_proxy(mosquitto: Broker) -> Iterator[SilentProxy]:
    """A link to the broker's TLS port that the test can cut without a word."""
    proxy = SilentProxy(mosquitto.tls_port)
    yield proxy
    proxy.close()


@pytest.fixture
def served(config_server: Callable[[dict[str, Any]], ConfigServer]) -> ConfigServer:
    """HA serves an empty configuration."""
    return config_server({})


@pytest.fixture
def proxied(
    make_board: Callable[..., Board], mosquitto: Broker, silent_proxy: SilentProxy, served: ConfigServer
) -> Callable[..., Board]:
    """Make boards whose broker link runs through the silent proxy."""

    def make(host: str = "127.0.0.1", **board: Any) -> Board:
        return make_board(secrets=secrets_config(mosquitto, host=host, port=silent_proxy.port), **board)

    return make


def needs_32_bit(micropython: MicroPython) -> None:
    if micropython.bits != 32:
        pytest.skip("libfaketime is in the 32-bit root")


def connects(board: Board) -> int:
    return len(board.log_lines(r"MQTT connected to"))


def info(peer: Peer) -> dict[str, Any]:
    before = len(peer.received(INFO))
    peer.publish(REFRESH, b"")
    peer.wait_for(lambda msgs: sum(m.topic == INFO for m in msgs) > before)
    return dict(json.loads(peer.received(INFO)[-1].payload))


def test_power_up_at_2000_sets_the_clock_by_ntp_before_tls(
    micropython: MicroPython, make_board: Callable[..., Board], served: ConfigServer, peer: Peer
) -> None:
    needs_32_bit(micropython)
    board = make_board(clock=POWER_UP)
    board.boot()
    wait_online(peer)
    board.wait_output("clock set by NTP")
    assert not board.log_lines(CERT_TOO_NEW)
    assert abs(board.read_flash("clock_last") - time.time()) < 60  # kept for the next power-up


def test_power_up_without_ntp_uses_the_last_known_time_and_still_verifies(
    micropython: MicroPython, make_board: Callable[..., Board], served: ConfigServer, peer: Peer
) -> None:
    needs_32_bit(micropython)
    board = make_board(clock=POWER_UP, ntp_host=NO_NTP)
    # never synced: the certificate is not valid yet at 2000, and it stays verified
    board.boot()
    board.wait_output(CERT_TOO_NEW, timeout=30)
    assert not board.log_lines("MQTT connected")
    board.power_off()
    # a run with NTP leaves the time on flash
    board.board["ntp_host"] = NTP_HOST
    board.write_config()
    board.boot()
    wait_online(peer)
    board.wait_output("clock set by NTP")
    board.power_off()
    # power-up without NTP: the last time known is past the certificate's start
    board.board["ntp_host"] = NO_NTP
    board.write_config()
    board.boot()
    wait_online(peer, count=2, timeout=40)
    assert board.log_lines("clock set to the last time known")


def test_silent_drops_leave_no_socket_or_heap_behind(
    proxied: Callable[..., Board], peer: Peer, silent_proxy: SilentProxy
) -> None:
    board = proxied(
        mqtt={"keepalive_s": 4, "backoff_max_s": 1},
        config={"boot_wait_s": 10},
    )
    board.boot()
    board.wait_output("running:")

    def drop() -> None:
        lost = len(board.log_lines("MQTT connection lost"))
        up = connects(board)
        silent_proxy.silence()  # no FIN: only the client's keepalive can tell
        board.wait(lambda: len(board.log_lines("MQTT connection lost")) > lost, 20, "the drop")
        silent_proxy.restore()
        board.wait(lambda: connects(board) > up, 30, "the reconnect")

    drop()  # the first reconnect allocates what every later one reuses
    time.sleep(0.5)
    sockets, heap = board.open_sockets(), info(peer)["mem_alloc"]
    for _ in range(20):
        drop()
    time.sleep(0.5)
    assert board.open_sockets() <= sockets == 1
    assert info(peer)["mem_alloc"] <= heap + 1024
    # every link but the live one was closed by the node itself
    assert silent_proxy.client_closes == silent_proxy.links - 1


def test_wifi_outage_waits_for_the_drivers_rejoin(
    proxied: Callable[..., Board], peer: Peer, silent_proxy: SilentProxy
) -> None:
    board = proxied(mqtt={"keepalive_s": 3})
    board.boot()
    wait_online(peer)
    board.wifi(False)
    silent_proxy.silence()
    board.wait_output("MQTT connection lost")
    time.sleep(4)  # the node notices WiFi is gone while the driver tries to rejoin
    silent_proxy.restore()
    board.wifi(True)
    wait_online(peer, count=2, timeout=30)
    # connect() while the ESP32's driver rejoins raises "Wifi Internal Error"
    assert board.count_events("wlan", "error") == 0
    assert board.count_events("wlan", "connect", "lab") == 1


def test_slow_dns_does_not_stall_the_node(
    proxied: Callable[..., Board], peer: Peer, silent_proxy: SilentProxy
) -> None:
    board = proxied(host="localhost", mqtt={"keepalive_s": 3})
    board.dns_delay(8000)
    board.boot()
    started = time.monotonic()
    # the loop runs on while the lookup waits: the node starts its modules on time
    board.wait_output("running:", timeout=6)
    assert time.monotonic() - started < 6
    assert not board.log_lines("MQTT connected")
    wait_online(peer, timeout=30)
    # ONLINE reaches the broker before the node has its PUBACK: a link silenced in
    # between fails the connect itself, which counts towards a WiFi rejoin
    board.wait(lambda: connects(board) == 1, 10, "the connect")
    # a dropped link reconnects to the address looked up before: no new lookup (a
    # loaded machine may have needed a second one while connecting the first time)
    up = connects(board)
    lookups = board.count_events("dns", "localhost")
    assert 1 <= lookups <= 2
    silent_proxy.silence()
    board.wait_output("MQTT connection lost")
    silent_proxy.restore()
    board.wait(lambda: connects(board) > up, 30, "the reconnect")
    assert board.count_events("dns", "localhost") == lookups, board.output()[-3000:]


@pytest.mark.parametrize("tls", [True, False])
def test_a_slow_tcp_connect_is_waited_for_before_the_first_write(
    make_board: Callable[..., Board], served: ConfigServer, peer: Peer, mosquitto: Broker, tls: bool
) -> None:
    # lwIP refuses a write on a socket whose connect is still in progress (EINPROGRESS,
    # which mbedTLS does not retry); on a WiFi link the connect takes a round trip or more
    plain = {} if tls else {"port": mosquitto.port, "insecure_plain_mqtt": True}
    board = make_board(secrets=secrets_config(mosquitto, **plain))
    board.env["SHIM_SLOW_CONNECT"] = "1"
    (board.inputs / "connect_delay_ms").write_text("300")
    board.boot()
    wait_online(peer)
    assert board.count_events("tcp", "connected") >= 1
    assert board.count_events("tcp", "early-write") == 0
