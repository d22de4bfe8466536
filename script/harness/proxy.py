"""TCP proxies on loopback in front of the test broker.

`DelayProxy` delays every byte both ways by a fixed time: with the link slow, "A reached
the broker before B happened" holds by the delay's margin, not by microseconds of
scheduling. `MqttProxy` drops or repeats chosen MQTT packets (a plain MQTT link), for
what a real broker only does when the network fails: a lost PUBACK, a resent PUBLISH.
`SilentProxy` cuts its links without a FIN or RST, as a lost WiFi or a dead router does.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable

TO_BROKER = "to broker"
TO_CLIENT = "to client"
PUBLISH = 3


def _recv(source: socket.socket) -> bytes:
    """The next bytes from `source`; b"" once it is closed or broken."""
    try:
        return source.recv(65536)
    except OSError:
        return b""


def _close_write(sink: socket.socket) -> None:
    """Pass an end of stream on (FIN)."""
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _Proxy:
    """Accept on 127.0.0.1:`port`, connect each client to 127.0.0.1:`target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            self._link(client, upstream)

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close every socket and wait for the threads."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)


class DelayProxy(_Proxy):
    """Forward to 127.0.0.1:`target`, `delay` seconds each way."""

    def __init__(self, target: int, delay: float) -> None:
        self.delay = delay
        super().__init__(target)

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        self._pipe(client, upstream)
        self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        due: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._start(self._read, source, due)
        self._start(self._write, sink, due)

    def _read(self, source: socket.socket, due: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            data = _recv(source)
            due.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, sink: socket.socket, due: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            at, data = due.get()
            time.sleep(max(0.0, at - time.monotonic()))
            if not data:
                _close_write(sink)
                return
            try:
                sink.sendall(data)
            except OSError:
                return


def split_packets(buffer: bytearray) -> list[bytes]:
    """Take the whole MQTT packets off the front of `buffer`."""
    packets: list[bytes] = []
    while len(buffer) >= 2:
        size, shift, index = 0, 0, 1
        while True:
            if index >= len(buffer):
                return packets  # the length itself is not complete yet
            byte = buffer[index]
            size |= (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(buffer) < index + size:
            return packets
        packets.append(bytes(buffer[: index + size]))
        del buffer[: index + size]
    return packets


def publish_fields(packet: bytes) -> tuple[str, int, bool, int]:
    """Topic, QoS, DUP and packet id (0 at QoS 0) of an MQTT 3.1.1 PUBLISH."""
    index = 1
    while packet[index] & 0x80:
        index += 1
    index += 1
    length = int.from_bytes(packet[index : index + 2], "big")
    topic = packet[index + 2 : index + 2 + length].decode()
    qos = (packet[0] >> 1) & 3
    pid = int.from_bytes(packet[index + 2 + length : index + 4 + length], "big") if qos else 0
    return topic, qos, bool(packet[0] & 0x08), pid


class MqttProxy(_Proxy):
    """A plain MQTT link to 127.0.0.1:`target` that can drop or repeat packets.

    `hook(direction, packet)` returns the packets to forward instead (the packet itself to
    pass it on, nothing to drop it). Every packet is kept, in order, as it arrived
    (`seen`) and as it was passed on (`forwarded`).
    """

    def __init__(self, target: int, hook: Callable[[str, bytes], list[bytes]]) -> None:
        self.hook = hook
        self.seen: list[tuple[str, bytes]] = []
        self.forwarded: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        super().__init__(target)

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        self._start(self._forward, client, upstream, TO_BROKER)
        self._start(self._forward, upstream, client, TO_CLIENT)

    def _forward(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        buffer = bytearray()
        while True:
            data = _recv(source)
            if not data:
                _close_write(sink)
                return
            buffer += data
            for packet in split_packets(buffer):
                with self._lock:
                    self.seen.append((direction, packet))
                    out = self.hook(direction, packet)
                    self.forwarded += [(direction, item) for item in out]
                try:
                    for item in out:
                        sink.sendall(item)
                except OSError:
                    return

    def publishes(
        self, direction: str, prefix: str = "", *, forwarded: bool = False
    ) -> list[tuple[str, int, bool, int]]:
        """(topic, qos, dup, pid) of the PUBLISH packets one way on topics under `prefix`:
        as they arrived, or as they were passed on."""
        with self._lock:
            packets = self.forwarded if forwarded else self.seen
            seen = [packet for way, packet in packets if way == direction and packet[0] >> 4 == PUBLISH]
        return [fields for fields in map(publish_fields, seen) if fields[0].startswith(prefix)]


class SilentProxy(_Proxy):
    """Forward to 127.0.0.1:`target` until `silence()`: from then on the links open so far
    swallow every byte both ways and never close (no FIN, no RST), and so do links opened
    while silent. `restore()` lets new links through again. `client_closes` counts the
    links whose client closed its socket."""

    def __init__(self, target: int) -> None:
        self.links = 0
        self.client_closes = 0
        self.silent = False
        self._dead: set[int] = set()
        self._lock = threading.Lock()
        super().__init__(target)

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            link = self.links
            self.links += 1
            if self.silent:
                self._dead.add(link)
        self._start(self._forward, client, upstream, link, True)
        self._start(self._forward, upstream, client, link, False)

    def _forward(self, source: socket.socket, sink: socket.socket, link: int, from_client: bool) -> None:
        while True:
            data = _recv(source)
            if not data:
                with self._lock:
                    self.client_closes += from_client
                    dead = link in self._dead
                if not dead:
                    _close_write(sink)
                return
            if link in self._dead:
                continue
            try:
                sink.sendall(data)
            except OSError:
                return

    def silence(self) -> None:
        """Cut every link, present and future, without a word."""
        with self._lock:
            self.silent = True
            self._dead.update(range(self.links))

    def restore(self) -> None:
        """Let new links through."""
        with self._lock:
            self.silent = False
