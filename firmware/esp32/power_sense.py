# Power sense: the server's power LED through an optocoupler on an input pin.
# Debounced by time; published retained ON/OFF on change, on connect and on refresh.
import asyncio

import log
import topics
from inputs import DebouncedInput


class PowerSense:
    def __init__(self, mqtt, config):
        self._input = DebouncedInput(config["power_sense"], self._on_change)
        self._mqtt = mqtt
        self._dirty = asyncio.Event()
        self.topic = topics.node_topic(config, "power")
        mqtt.subscribe(topics.node_topic(config, "refresh"), self._on_refresh)
        mqtt.on_connect.append(self._dirty.set)
        asyncio.create_task(self._publisher())

    @property
    def state(self):
        return self._input.state

    def _on_change(self, on):
        log.info("power sense: %s" % ("ON" if on else "OFF"))
        self._dirty.set()

    def _on_refresh(self, topic, payload, retained):
        if not retained:
            self._dirty.set()

    async def _publisher(self):
        # One publisher sending the latest state: a bouncing input cannot pile up tasks.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.state is not None:
                await self._mqtt.publish(self.topic, "ON" if self.state else "OFF", retain=True, qos=1)


def start(mqtt, config):
    return PowerSense(mqtt, config)
