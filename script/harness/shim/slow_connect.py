# socket.socket() for shim/socket.py when SHIM_SLOW_CONNECT is set: a TCP connect takes
# as long as the file "connect_delay_ms" in SHIM_INPUTS says, and until it is done the
# socket is not writable and a write raises OSError(EINPROGRESS), as lwIP answers a
# write on a connecting netconn (api_msg.c, lwip_netconn_do_write). Linux completes a
# loopback connect at once and answers an early write with EAGAIN, which hides that.
# Slower than the port's socket (select polls a Python object): for the tests that ask.
import io
import os
import select
import socket as _shim
import time
from errno import EINPROGRESS

import machine

_port_socket = _shim._socket.socket
_inputs = os.getenv("SHIM_INPUTS") or "."
_POLL = 3  # MP_STREAM_POLL
_CLOSE = 4  # MP_STREAM_CLOSE


def _delay_ms():
    try:
        with open(_inputs + "/connect_delay_ms") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


class _Socket(io.IOBase):
    def __init__(self, sock):
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN | select.POLLOUT)
        self._done_at = None  # ticks when the connect completes; None: not connecting

    def _connecting(self):
        if self._done_at is None:
            return False
        if time.ticks_diff(self._done_at, time.ticks_ms()) > 0:
            return True
        self._done_at = None
        machine.record("tcp", "connected")
        return False

    def connect(self, addr):
        self._done_at = time.ticks_add(time.ticks_ms(), _delay_ms())
        machine.record("tcp", "connecting")
        try:
            self._sock.connect(addr)
        except OSError as err:
            if err.errno != EINPROGRESS:
                self._done_at = None
                raise
        raise OSError(EINPROGRESS)  # a non-blocking connect on lwIP

    def write(self, buf):
        if self._connecting():
            machine.record("tcp", "early-write")
            raise OSError(EINPROGRESS)
        return self._sock.write(buf)

    def send(self, buf):
        return self.write(buf)

    def readinto(self, buf):
        return self._sock.readinto(buf)

    def read(self, n=-1):
        return self._sock.read(n) if n >= 0 else self._sock.read()

    def recv(self, n):
        return self._sock.recv(n)

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def setsockopt(self, *args):
        self._sock.setsockopt(*args)

    def close(self):
        self._poll.unregister(self._sock)
        self._sock.close()

    def ioctl(self, req, arg):
        if req == _CLOSE:
            self.close()
            return 0
        if req != _POLL:
            return -1
        ready = 0
        for _, events in self._poll.poll(0):
            ready = events
        if self._connecting():
            ready &= ~select.POLLOUT
        return ready & (arg | select.POLLERR | select.POLLHUP)


def socket(af=_shim.AF_INET, kind=_shim.SOCK_STREAM, *args):
    sock = _port_socket(af, kind, *args)
    return _Socket(sock) if kind == _shim.SOCK_STREAM else sock
