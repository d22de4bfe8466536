# Blocking network calls off the event loop: a DNS lookup waits seconds for a slow
# server and an NTP query for its answer, while the relay and the broker link must keep
# running. Each call runs on a thread (the ESP32 port releases the GIL while lwIP
# waits), one at a time; a caller that gives up leaves the call to finish, and the
# next caller for the same key waits for that one. Broker addresses are looked up
# once and kept until forget().
import _thread
import asyncio
import socket
from time import ticks_diff, ticks_ms

_pending = None  # (key, out) of the call on the thread
_addrs = {}


def _run(fn, args, out):
    global _pending
    try:
        out.append((True, fn(*args)))
    except Exception as err:  # handed to the waiting task
        out.append((False, err))
    _pending = None


async def call(key, fn, args, timeout_ms):
    """fn(*args) on a thread: its result, or its exception raised here; OSError when it
    takes longer than timeout_ms."""
    global _pending
    start = ticks_ms()
    while _pending is not None and _pending[0] != key:
        if ticks_diff(ticks_ms(), start) > timeout_ms:
            raise OSError("busy with %s" % (_pending[0],))
        await asyncio.sleep_ms(20)
    if _pending is None:
        _pending = (key, [])
        try:
            _thread.start_new_thread(_run, (fn, args, _pending[1]))
        except Exception:
            _pending = None
            raise
    out = _pending[1]
    while not out:
        if ticks_diff(ticks_ms(), start) > timeout_ms:
            raise OSError("timed out: %s" % (key,))
        await asyncio.sleep_ms(20)
    ok, value = out[0]
    if not ok:
        raise value
    return value


def _lookup(host, port):
    # on the thread: the answer is kept even when its caller gave up waiting
    addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][-1]
    _addrs[(host, port)] = addr
    return addr


async def address(host, port, timeout_ms):
    """The socket address of host:port, looked up once (IPv4, as on the ESP32)."""
    addr = _addrs.get((host, port))
    if addr is None:
        addr = await call(host, _lookup, (host, port), timeout_ms)
    return addr


def forget():
    """Look addresses up again (a new WiFi association, a broker that keeps failing)."""
    _addrs.clear()
