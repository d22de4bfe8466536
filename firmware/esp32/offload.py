# Blocking network calls off the event loop: a DNS lookup waits seconds for a slow
# server and an NTP query for its answer, while the relay and the broker link must keep
# running. Each call runs on a thread (the ESP32 port releases the GIL while lwIP
# waits), one at a time; broker addresses are looked up once and kept until forget().
import _thread
import asyncio
import socket
from time import ticks_diff, ticks_ms

_busy = False
_addrs = {}


def _run(fn, args, out):
    global _busy
    try:
        out.append((True, fn(*args)))
    except Exception as err:  # handed to the waiting task
        out.append((False, err))
    _busy = False


async def call(fn, args, timeout_ms):
    """fn(*args) on a thread: its result, or its exception raised here; OSError when it
    takes longer than timeout_ms (the thread then ends on its own)."""
    global _busy
    start = ticks_ms()
    while _busy:
        if ticks_diff(ticks_ms(), start) > timeout_ms:
            raise OSError("a blocking call is still running")
        await asyncio.sleep_ms(20)
    _busy = True
    out = []
    try:
        _thread.start_new_thread(_run, (fn, args, out))
    except Exception:
        _busy = False
        raise
    while not out:
        if ticks_diff(ticks_ms(), start) > timeout_ms:
            raise OSError("timed out: %s" % (args[0] if args else fn))
        await asyncio.sleep_ms(20)
    ok, value = out[0]
    if not ok:
        raise value
    return value


async def address(host, port, timeout_ms):
    """The socket address of host:port, looked up once (IPv4, as on the ESP32)."""
    key = (host, port)
    addr = _addrs.get(key)
    if addr is None:
        info = await call(socket.getaddrinfo, (host, port, socket.AF_INET, socket.SOCK_STREAM), timeout_ms)
        addr = _addrs[key] = info[0][-1]
    return addr


def forget():
    """Look addresses up again (a new WiFi association, a broker that keeps failing)."""
    _addrs.clear()
