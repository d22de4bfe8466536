# What survives a reboot on flash: the crash counter, the last traceback, and
# whether the watchdog was starving because MQTT was down (a network outage, not a
# hang). N consecutive crash boots without a stable run mean safe mode.
import machine

COUNT = "crash_count"
TRACE = "crash.txt"
NETDOWN = "netdown"
MAX_TRACE = 2000

CAUSES = {
    getattr(machine, "PWRON_RESET", 1): "power on",
    getattr(machine, "HARD_RESET", 2): "hard reset",
    getattr(machine, "WDT_RESET", 3): "watchdog",
    getattr(machine, "DEEPSLEEP_RESET", 4): "deep sleep",
    getattr(machine, "SOFT_RESET", 5): "soft reset",
}


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


class BootState:
    def __init__(self):
        cause = machine.reset_cause()
        self.cause = CAUSES.get(cause, str(cause))
        self.trace = _read(TRACE)
        _remove(TRACE)
        self.hang = cause == getattr(machine, "WDT_RESET", 3) and _read(NETDOWN) is None
        if self.hang:
            # The watchdog bit while MQTT worked: the firmware hung. That is a crash.
            _write(COUNT, str(crash_count() + 1))
        self.crashes = crash_count()
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
