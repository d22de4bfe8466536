# Power sense: the server's power LED through an optocoupler on an input pin.
# Debounced by time; published retained ON/OFF on change, on connect and on refresh.
import asyncio
from time import ticks_diff, ticks_ms

import log
from machine import Pin


class PowerSense:
    def __init__(self, mqtt, config):
        cfg = config["power_sense"]
        pull = cfg.get("pull")
        pull = Pin.PULL_UP if pull == "up" else Pin.PULL_DOWN if pull == "down" else None
        self._pin = Pin(cfg["pin"], Pin.IN, pull)
        self._active = 1 if cfg.get("active", 0) else 0
        self._debounce = int(cfg.get("debounce_ms", 200))
        self._poll = max(5, int(cfg.get("poll_ms", 20)))
        self.state = None
        self._mqtt = mqtt
        self._dirty = asyncio.Event()
        base, node = config["base"], config["node_id"]
        self.topic = "%s/node/%s/power" % (base, node)
        mqtt.subscribe("%s/node/%s/refresh" % (base, node), self._on_refresh)
        mqtt.on_connect.append(self._dirty.set)
        asyncio.create_task(self._watch())
        asyncio.create_task(self._publisher())

    def _on_refresh(self, topic, payload, retained):
        if not retained:
            self._dirty.set()

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
                    log.info("power sense: %s" % ("ON" if on else "OFF"))
                    self._dirty.set()
            await asyncio.sleep_ms(self._poll)

    async def _publisher(self):
        # One publisher sending the latest state: a bouncing input cannot pile up tasks.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.state is not None:
                await self._mqtt.publish(self.topic, "ON" if self.state else "OFF", retain=True, qos=1)


def start(mqtt, config):
    return PowerSense(mqtt, config)
