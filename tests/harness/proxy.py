"""A TCP proxy on loopback that delays every byte both ways by a fixed time.

Ordering tests use it: with the link slow, "A reached the broker before B
happened" holds by the delay's margin, not by microseconds of scheduling.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable


class DelayProxy:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`target`, `delay` seconds each way."""

    def __init__(self, target: int, delay: float) -> None:
        self.target = target
        self.delay = delay
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
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        due: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._start(self._read, source, due)
        self._start(self._write, sink, due)

    def _read(self, source: socket.socket, due: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            due.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, sink: socket.socket, due: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            at, data = due.get()
            time.sleep(max(0.0, at - time.monotonic()))
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            try:
                sink.sendall(data)
            except OSError:
                return

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
