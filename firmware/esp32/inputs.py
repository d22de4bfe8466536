# A digital input debounced by time: `on_change(active)` runs once the level has
# stayed put for `debounce_ms`. Polled, because edge interrupts on a noisy cable
# (a power LED, a UPS contact) would wake the CPU for every bounce.
import asyncio
from time import ticks_diff, ticks_ms

from machine import Pin


def pull_of(name):
    return Pin.PULL_UP if name == "up" else Pin.PULL_DOWN if name == "down" else None


class DebouncedInput:
    def __init__(self, cfg, on_change):
        self._pin = Pin(cfg["pin"], Pin.IN, pull_of(cfg.get("pull")))
        self._active = 1 if cfg.get("active", 0) else 0
        self._debounce = int(cfg.get("debounce_ms", 200))
        self._poll = max(5, int(cfg.get("poll_ms", 20)))
        self._on_change = on_change
        self.state = None
        asyncio.create_task(self._watch())

    async def _watch(self):
        candidate = self._pin.value()
        since = ticks_ms()
        while True:
            raw = self._pin.value()
            now = ticks_ms()
            if raw != candidate:
                candidate, since = raw, now
            elif ticks_diff(now, since) >= self._debounce:
                on = candidate == self._active
                if on != self.state:
                    self.state = on
                    self._on_change(on)
            await asyncio.sleep_ms(self._poll)
