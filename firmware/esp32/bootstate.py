# What survives a reboot on flash: the crash counter, the last traceback, whether the
# watchdog was starving because MQTT was down (a network outage, not a hang), and
# whether the last reset was planned. main.py decides safe mode here, before the big
# imports: N consecutive crash boots (exceptions, hangs, panics) mean safe mode.
# Also the uptime, kept across ticks_ms wraps.
from time import ticks_diff, ticks_ms

import machine

COUNT = "crash_count"
TRACE = "crash.txt"
NETDOWN = "netdown"
PLANNED = "planned_reset"
MAX_TRACE = 2000
SAFE_AFTER = 3  # safe_mode_after unless board.py sets it

PWRON = getattr(machine, "PWRON_RESET", 1)
HARD = getattr(machine, "HARD_RESET", 2)
WDT = getattr(machine, "WDT_RESET", 3)
CAUSES = {
    PWRON: "power on",
    WDT: "watchdog",
    getattr(machine, "DEEPSLEEP_RESET", 4): "deep sleep",
    getattr(machine, "SOFT_RESET", 5): "soft reset",
}


def read_json(path, default=None):
    # here, not in fsutil: this module is always loaded (node.py, fsutil.py use it)
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        pass  # full or broken flash: run anyway


def _remove(path):
    try:
        import os

        os.remove(path)
    except OSError:
        pass


def crash_count():
    try:
        return int(_read(COUNT) or 0)
    except ValueError:
        return 0


def record_crash(trace):
    """Called by main.py before it resets after an uncaught exception."""
    _write(TRACE, trace[-MAX_TRACE:])
    _write(COUNT, str(crash_count() + 1))


def planned():
    """The next reset is deliberate. The ESP32 port reports machine.reset() (esp_restart)
    and a panic alike, as HARD_RESET: this flag on flash tells them apart at boot."""
    _write(PLANNED, "1")


def reset():
    planned()
    machine.reset()


def _safe_after():
    try:
        from board import BOARD

        return int(BOARD.get("safe_mode_after", SAFE_AFTER))
    except Exception:  # a broken board.py must not stop the decision
        return SAFE_AFTER


# Loaded on demand (management, updates); their names are interned at boot.
ON_DEMAND = ("mgmt", "fwupdate", "image")


def load_names():
    """Load the on-demand modules once and drop them again, keeping only their names.

    MicroPython interns every name a module uses in a pool that doubles when full and
    is never freed. Done at boot the next pool fits; done weeks later in a fragmented
    heap it may not (the 32-bit port needed 4.5 KB in one piece for `mgmt`). What they
    import besides (log, sign, asyncio's parts) stays: the node uses it anyway."""
    import gc
    import sys

    for name in ON_DEMAND:
        gc.collect()  # garbage gone first: the pool's next piece finds the heap's top free
        try:
            __import__(name)
        except Exception:  # noqa: S110 (a broken module fails when it is used, and says so then)
            pass
    for name in ON_DEMAND + ("fsutil",):
        sys.modules.pop(name, None)
    gc.collect()


class BootState:
    def __init__(self):
        cause = machine.reset_cause()
        planned = _read(PLANNED) is not None
        _remove(PLANNED)
        if cause == HARD:
            self.cause = "reset by the firmware" if planned else "panic"
        else:
            self.cause = CAUSES.get(cause, str(cause))
        self.trace = _read(TRACE)
        _remove(TRACE)
        # The watchdog bit while MQTT worked: the firmware hung. That is a crash, and
        # so is a reset nobody planned (a panic: no Python code ran to record it).
        self.hang = cause == WDT and _read(NETDOWN) is None
        self.panic = cause == HARD and not planned
        if self.hang or self.panic:
            _write(COUNT, str(crash_count() + 1))
        self.crashes = crash_count()
        self.safe = self.crashes >= _safe_after()
        self._netdown = None
        self.net_down(True)

    def net_down(self, down):
        """Remember on flash (on changes only) whether MQTT is down."""
        if down != self._netdown:
            self._netdown = down
            if down:
                _write(NETDOWN, "1")
            else:
                _remove(NETDOWN)

    def stable(self):
        if self.crashes:
            self.crashes = 0
            _write(COUNT, "0")


_last = ticks_ms()  # main.py imports this module first thing after boot
_up_s = 0
_up_rest_ms = 0


def uptime_s():
    """Seconds since boot. ticks_ms wraps every 2**30 ms on the ESP32 and ticks_diff
    is only right within 2**29 ms: the housekeeping calls this every 100 ms, so each
    step is small and the sum stays right past any number of wraps."""
    global _last, _up_s, _up_rest_ms
    now = ticks_ms()
    ms = _up_rest_ms + ticks_diff(now, _last)
    _last = now
    _up_s += ms // 1000
    _up_rest_ms = ms % 1000
    return _up_s


def uptime_ms():
    return uptime_s() * 1000 + _up_rest_ms
