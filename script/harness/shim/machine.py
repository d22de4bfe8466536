# `machine` for the unix port: the ESP32's pins, timers, watchdog and reset,
# recorded to the file named by SHIM_EVENTS so tests can measure them.
# Lines: "<unix time ns> <what> ...". Input levels come from files in SHIM_INPUTS.
# As strict as the ESP32 port (ports/esp32 machine_pin.c, machine_timer.c, modmachine.c).
import _thread
import os
import time

import micropython

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
RESET_EXIT = 77  # exit code of machine.reset(); the harness boots the board again
# (with HARD_RESET: esp_restart() is ESP_RST_SW, which the port reports as HARD_RESET,
# like a panic; only a REPL soft reset is SOFT_RESET)

_lock = _thread.allocate_lock()
_libc = None


def _c(name, ret, args):
    # libc through ffi, loaded on first use to keep the shim's heap share small.
    global _libc
    if _libc is None:
        import ffi

        _libc = ffi.open("libc.so.6")
    return _libc.func(ret, name, args)


_events = os.getenv("SHIM_EVENTS") or "shim-events.txt"
_inputs = os.getenv("SHIM_INPUTS") or "."
# ESP32 GPIOs; 34-39 are input only and have no pull resistors: the port accepts a
# pull on them without an error (gpio_pullup_en does nothing there), the input floats.
_VALID = set(range(0, 6)) | set(range(12, 20)) | {21, 22, 23, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39}
_NO_PULL = range(34, 40)


def record(*what):
    line = "%d %s\n" % (time.time_ns(), " ".join(str(w) for w in what))
    with _lock:
        with open(_events, "a") as f:
            f.write(line)


def reset_cause():
    return int(os.getenv("SHIM_RESET_CAUSE") or PWRON_RESET)


def unique_id():
    return bytes.fromhex(os.getenv("SHIM_CHIP_ID") or "240ac4a1b2c3")


def reset():
    record("reset")
    _c("_exit", "v", "i")(RESET_EXIT)


def freq(hz=None):
    return 240000000


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin, mode=-1, pull=None, value=None):
        if pin not in _VALID:
            raise ValueError("invalid pin")
        self._id = pin
        self._value = 0
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=None, value=None):
        if mode == Pin.OUT and self._id >= 34:
            raise ValueError("pin can only be input")
        self._mode = mode
        self._pull = pull
        if value is not None:
            self._value = 1 if value else 0
        record("pin", self._id, "mode", "out" if mode == Pin.OUT else "in", self._value)

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.OUT:
                return self._value
            try:
                with open("%s/pin%d" % (_inputs, self._id)) as f:
                    return int(f.read().strip() or 0)
            except OSError:
                # undriven: the pull decides; without one it floats (read here as 0)
                if self._id in _NO_PULL:
                    return 0
                return 1 if self._pull == Pin.PULL_UP else 0
        v = 1 if v else 0
        if v != self._value:
            self._value = v
            record("pin", self._id, "value", v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Timer:
    # The port's hardware timer ISR only calls mp_sched_schedule(): the callback runs
    # between bytecodes of the main thread, never while it is inside a blocking C call
    # (DNS, a TLS step). The thread here only plays the hardware counter.
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, timer_id, **kwargs):
        self._gen = 0
        if kwargs:
            self.init(**kwargs)

    def init(self, mode=PERIODIC, period=-1, callback=None, hard=False):
        if hard:
            raise ValueError("hard Timers are not implemented")
        self._gen += 1
        _thread.start_new_thread(self._run, (self._gen, mode, period, callback))

    def _run(self, gen, mode, period, callback):
        while True:
            time.sleep_ms(period)
            if gen != self._gen:
                return
            if callback is not None:
                try:
                    micropython.schedule(callback, self)
                except RuntimeError:
                    pass  # the schedule queue is full: the port drops it too
            if mode == Timer.ONE_SHOT:
                return

    def deinit(self):
        self._gen += 1


class WDT:
    # The kernel's alarm() is the hardware timer: when it is not fed in time the
    # process dies of SIGALRM, like an ESP32 reset by its watchdog.
    def __init__(self, id=0, timeout=5000):
        self._s = max(1, (timeout + 999) // 1000)
        self._alarm = _c("alarm", "I", "I")
        record("wdt", "start", timeout)
        self._alarm(self._s)

    def feed(self):
        record("wdt", "feed")
        self._alarm(self._s)


class RTC:
    # The board's wall clock. Under libfaketime (SHIM_CLOCK names its offset file, see
    # script/harness/micropython.py) setting it moves the process's clock, as on the ESP32;
    # on the host's clock it only records the call.
    def datetime(self, dt=None):
        if dt is None:
            t = time.gmtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        target = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        record("rtc", "set", target)
        clock = os.getenv("SHIM_CLOCK")
        if clock:
            with open(clock) as f:
                offset = int(f.read())
            real = time.time() - offset
            with open(clock, "w") as f:
                f.write("%+d\n" % round(target - real))  # whole seconds: libfaketime's offset
