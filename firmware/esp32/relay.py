# Relay (or optocoupler) across the server's power-button header. PRESS and HOLD
# (checked and handed over by commands.py) are timed here and the on-time is capped. On the ESP32 no Python code runs while the
# loop is inside a blocking call (DNS, TLS handshake): a machine.Timer callback is only
# scheduled. So the blocking steps wait until a pulse has ended (MQTT.blocking_ok).
import asyncio
from time import ticks_diff, ticks_ms

import log
from commands import HOLD, PRESS
from machine import Pin, Timer

CAP_MS = 10000  # never hold a power button longer, whatever the configuration says
# HOLD must outlast the forced power-off of common boards (ATX: more than 4 s, some
# more than 6 s), and max_on_ms the HOLD, or it cuts the HOLD short.
TIMES = {"press_ms": 150, "hold_ms": 8000, "max_on_ms": 9000}
MAX_PRESS_MS = 2000  # a longer PRESS comes too close to a forced power-off
MIN_HOLD_MS = 4000


class Relay:
    def __init__(self, mqtt, config):
        cfg = config["relay"]
        self._active = 1 if cfg.get("active", 1) else 0
        # value= before the mode: the pin never passes through the active level.
        self._pin = Pin(cfg["pin"], Pin.OUT, value=1 - self._active)
        self._timer = Timer(cfg.get("timer", 0))
        self._off_cb = self._timer_off  # bound once: no allocation in the timer callback
        times = _times(cfg)
        self.max_on_ms = min(times["max_on_ms"], CAP_MS)
        self.times = {PRESS: times["press_ms"], HOLD: times["hold_ms"]}
        self._on_at = None
        mqtt.before_blocking.append(self.idle)
        asyncio.create_task(self._guard())

    async def idle(self):
        """Return once no pulse is running."""
        while self._on_at is not None:
            await asyncio.sleep_ms(10)

    def _off(self):
        self._pin.value(1 - self._active)
        self._on_at = None

    def _timer_off(self, _timer):
        self._pin.value(1 - self._active)

    def command(self, cmd):
        """Pulse for a verified PRESS or HOLD, unless a pulse is running."""
        if self._on_at is not None:
            log.warning("power command %s ignored: a pulse is running" % cmd)
            return
        self._on_at = ticks_ms()  # busy from now: no blocking step may start
        asyncio.create_task(self.pulse(cmd))

    async def pulse(self, cmd):
        ms = min(self.times[cmd], self.max_on_ms)
        self._on_at = ticks_ms()
        try:
            self._pin.value(self._active)
            self._timer.init(mode=Timer.ONE_SHOT, period=ms, callback=self._off_cb)
            await asyncio.sleep_ms(ms)
        finally:
            self._off()
            self._timer.deinit()
        log.info("%s: button pulsed for %d ms" % (cmd, ms))

    async def _guard(self):
        # Belt and braces: whatever happens to a pulse task, the relay goes off.
        while True:
            await asyncio.sleep_ms(200)
            on_at = self._on_at
            if on_at is not None and ticks_diff(ticks_ms(), on_at) > self.max_on_ms + 200:
                self._off()
                log.error("relay was on longer than %d ms: forced off" % self.max_on_ms)


def _times(cfg):
    # Defaults where unset; a PRESS that could force the server off is refused.
    times = {}
    for key, default in TIMES.items():
        times[key] = int(cfg.get(key, default))
    press, hold, cap = times["press_ms"], times["hold_ms"], min(times["max_on_ms"], CAP_MS)
    if not 1 <= press <= MAX_PRESS_MS:
        log.error("relay.press_ms %d refused (1-%d ms): %d used" % (press, MAX_PRESS_MS, TIMES["press_ms"]))
        times["press_ms"] = TIMES["press_ms"]
    if hold < MIN_HOLD_MS:
        log.warning("relay.hold_ms %d: boards force off only after more than 4 s" % hold)
    if hold > cap:
        log.error("relay.hold_ms %d is above max_on_ms: a HOLD lasts only %d ms" % (hold, cap))
    return times


def start(mqtt, config):
    return Relay(mqtt, config)
