# `socket` as on the ESP32: the unix port's own module, but a name lookup takes as long
# as the file "dns_delay_ms" in SHIM_INPUTS says (lwIP waits for its DNS server) and is
# recorded; numeric addresses are answered at once, as lwIP does. While the file
# "handshake_block_ms" exists, each new TCP socket (a broker connection, right before
# its TLS handshake) first blocks the interpreter in C that long: an ESP32 computes a
# handshake's ECDHE and certificate steps for a second or more, and no task and no
# scheduled callback runs meanwhile.
import os
import sys
import time

from machine import block_ms, record

_path = sys.path[:]
sys.path.clear()  # with no path, "socket" is the built-in module
import socket as _socket  # noqa: E402

sys.path[:] = _path
_inputs = os.getenv("SHIM_INPUTS") or "."

for _name in dir(_socket):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_socket, _name)


def _numeric(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def getaddrinfo(host, port, *args):
    if not _numeric(host):
        record("dns", host)
        try:
            with open(_inputs + "/dns_delay_ms") as f:
                delay = int(f.read())
        except OSError:
            delay = 0
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < delay:
            time.sleep_ms(50)  # a collection in another thread cuts a sleep short
    return _socket.getaddrinfo(host, port, *args)


_port_socket = _socket.socket


def socket(af=_socket.AF_INET, kind=_socket.SOCK_STREAM, *args):
    if kind == _socket.SOCK_STREAM:
        try:
            with open(_inputs + "/handshake_block_ms") as f:
                ms = int(f.read())
        except (OSError, ValueError):
            ms = 0
        if ms > 0:
            record("tls", "blocked", ms)
            block_ms(ms)
            record("tls", "done")
    return _port_socket(af, kind, *args)
