# `socket` with a resolver that blocks like an ESP32's lwIP lookup when the DNS server
# does not answer: while the file "dns_block_ms" in SHIM_INPUTS holds a number,
# getaddrinfo() first blocks the whole interpreter in C for that many milliseconds (no
# task and no scheduled callback runs meanwhile). On the path only when a test asks
# for it (mp_board.py, SHIM_SLOW_DNS), so other tests keep the port's own module.
import os
import sys

_path = sys.path
sys.path = []  # the built-in module, not this file
try:
    import socket as _port
    from socket import *  # noqa: F403
finally:
    sys.path = _path

_inputs = os.getenv("SHIM_INPUTS") or "."


def getaddrinfo(*args):
    try:
        with open(_inputs + "/dns_block_ms") as f:
            ms = int(f.read())
    except (OSError, ValueError):
        ms = 0
    if ms > 0:
        from machine import block_ms, record

        record("dns", "blocked", ms)
        block_ms(ms)
        record("dns", "answered")
    return _port.getaddrinfo(*args)
