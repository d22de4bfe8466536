# `socket` as on the ESP32: the unix port's own module, but a name lookup takes as long
# as the file "dns_delay_ms" in SHIM_INPUTS says (lwIP waits for its DNS server) and is
# recorded; numeric addresses are answered at once, as lwIP does. With
# SHIM_SLOW_HANDSHAKE set, TCP sockets come from slow_handshake.py; with
# SHIM_SLOW_CONNECT, from slow_connect.py.
import os
import sys
import time

from machine import record

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


if os.getenv("SHIM_SLOW_HANDSHAKE"):  # a module of its own: the heap is the firmware's
    from slow_handshake import socket  # noqa: F401
elif os.getenv("SHIM_SLOW_CONNECT"):
    from slow_connect import socket  # noqa: F401
