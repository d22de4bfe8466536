"""Small helpers for processes the tests start."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

_handed_out: collections.deque[int] = collections.deque(maxlen=4096)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Never one this process handed out recently: the kernel may offer a port again once
    its probe socket is closed, and two listeners of one broker then collide.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.append(port)
            return port


def tcp_listener(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:`port` (a server's port that answers); close it to stop."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    return server


def udp_listener(timeout: float = 10) -> socket.socket:
    """A UDP socket on 127.0.0.1, a free port: where a test sends a magic packet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    return sock


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it is true, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def port_open(port: int) -> bool:
    """Return whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 5) -> None:
    """Stop a process by PID: SIGTERM, then SIGKILL; always reap it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass
