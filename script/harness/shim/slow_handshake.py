# socket.socket() for shim/socket.py when SHIM_SLOW_HANDSHAKE is set: while the file
# "handshake_block_ms" exists in SHIM_INPUTS, each new TCP socket (a broker connection,
# right before its TLS handshake) first blocks the interpreter in one C call that long.
# An ESP32 computes a handshake's ECDHE and certificate steps for a second or more:
# no task and no scheduled callback runs meanwhile.
import os
import socket as _shim

import machine

_port_socket = _shim._socket.socket
_inputs = os.getenv("SHIM_INPUTS") or "."


def socket(af=_shim.AF_INET, kind=_shim.SOCK_STREAM, *args):
    if kind == _shim.SOCK_STREAM:
        try:
            with open(_inputs + "/handshake_block_ms") as f:
                ms = int(f.read())
        except (OSError, ValueError):
            ms = 0
        if ms > 0:
            machine.record("tls", "blocked", ms)
            machine._c("usleep", "i", "I")(ms * 1000)  # glibc's usleep takes over a second
            machine.record("tls", "done")
    return _port_socket(af, kind, *args)
