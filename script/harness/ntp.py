"""An SNTP responder on a loopback address, for nodes whose clock starts at 2000.

It answers with the host's clock. Port 123 is fixed in the node's ntptime, so the
responder takes a private loopback address instead of a port (binding 123 needs root,
as the sessions and CI have). SO_REUSEPORT lets two test sessions on one machine share
the address: every responder tells the same time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

NTP_HOST = "127.123.0.1"
NTP_PORT = 123
NTP_TO_UNIX = 2208988800


def ntp_answer(query: bytes, now: float) -> bytes:
    """A server's answer (mode 4, stratum 1) to a client's 48-byte query at `now`."""
    seconds = int(now) + NTP_TO_UNIX
    fraction = int((now % 1) * 2**32)
    stamp = struct.pack("!II", seconds & 0xFFFFFFFF, fraction)
    head = bytes([0x24, 1, 0, 0xEC]) + bytes(8) + b"LOCL"
    origin = query[40:48] if len(query) >= 48 else bytes(8)
    return head + stamp + origin + stamp + stamp


class NtpServer:
    """Answer SNTP queries on `host`:123 from a thread until stopped."""

    def __init__(self, host: str = NTP_HOST, port: int = NTP_PORT) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> NtpServer:
        """Start answering."""
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                query, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                self._sock.sendto(ntp_answer(query, time.time()), peer)

    def stop(self) -> None:
        """Stop answering and free the address."""
        self._stopped.set()
        self._thread.join(2)
        self._sock.close()
