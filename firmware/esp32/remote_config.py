# Remote configuration over the SmartServer protocol (docs/protocol.md):
# request on <base>/login/<node>/set; the answer is the whole JSON on
# <base>/login/<node>, or (when the request carries wait_s) the number of components
# there and one message per component on <base>/login/<node>/<component>.
# The node re-requests until it has everything; the last good configuration is
# cached on flash for an offline boot.
import asyncio
import json
import os

import log
import topics
from settings import REMOTE_SECTIONS
from version import VERSION

CACHE = "remote_config.json"
PLATFORM = "esp32"


def relevant(components):
    """The sections this firmware uses: all else is cached on flash, not kept in RAM."""
    if components is None:
        return None
    return {k: components[k] for k in REMOTE_SECTIONS if k in components}


def load_cache():
    try:
        with open(CACHE) as f:
            data = json.load(f)
    except OSError:
        return None
    except ValueError as err:
        log.error("cached configuration %s does not parse (%s): ignored" % (CACHE, err))
        return None
    return data if isinstance(data, dict) else None


def save_cache(components):
    tmp = CACHE + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(components, f)
        os.rename(tmp, CACHE)
    except OSError as err:
        log.error("could not cache the configuration: %r" % err)
        try:
            os.remove(tmp)
        except OSError:
            pass


class RemoteConfig:
    def __init__(self, mqtt, config):
        cfg = config.get("config") or {}
        self._wait_s = cfg.get("wait_s")
        self._retry_ms = int(float(cfg.get("retry_s", 15)) * 1000)
        self._max_components = int(cfg.get("max_components", 16))
        self._mqtt = mqtt
        self.answer = topics.login_topic(config)
        self.request = self.answer + "/set"
        self.components = None  # the complete configuration once received
        self.done = asyncio.Event()
        self._expected = None
        self._got = {}
        self._progress = asyncio.Event()
        mqtt.subscribe(self.answer, self._on_answer, qos=1)
        mqtt.subscribe(self.answer + "/+", self._on_component, qos=1)
        asyncio.create_task(self._fetch())

    def _payload(self):
        if self._wait_s is None:
            return '"%s"' % VERSION
        return json.dumps([VERSION, PLATFORM, self._wait_s])

    def _on_answer(self, topic, payload, retained):
        if self.done.is_set() or self._retained(topic, retained):
            return
        try:
            data = json.loads(payload)
        except ValueError:
            log.error("configuration answer is not JSON (%d bytes)" % len(payload))
            return
        if isinstance(data, int) and not isinstance(data, bool):
            if not 0 <= data <= self._max_components:
                log.error("configuration has %d components, more than %d" % (data, self._max_components))
                return
            self._expected = data
            self._got = {}
            self._progress.set()
            self._check()
        elif isinstance(data, dict):
            self._complete(data)
        else:
            log.error("configuration answer is neither an object nor a count")

    def _on_component(self, topic, payload, retained):
        name = topic[len(self.answer) + 1 :]
        if name == "set" or self.done.is_set() or self._expected is None:
            return  # our own request, or a component without its count
        if self._retained(topic, retained):
            return
        try:
            self._got[name] = json.loads(payload)
        except ValueError:
            log.error("configuration component %s is not JSON" % name)
            return
        self._progress.set()
        self._check()

    def _retained(self, topic, retained):
        # HA never retains answers: a retained one was left by some other client.
        if retained:
            log.warning("retained configuration message on %s ignored" % topic)
        return retained

    def _check(self):
        if self._expected is not None and len(self._got) >= self._expected:
            got, self._got = self._got, {}
            self._complete(got)

    def _complete(self, components):
        self._expected = None
        if components != load_cache():
            save_cache(components)  # before the log line: whoever reads it finds the cache
        log.info("configuration received: %d components" % len([k for k in components if k != "_order"]))
        self.components = relevant(components)
        self.done.set()
        self._progress.set()

    async def _fetch(self):
        while not self.done.is_set():
            await self._mqtt.up.wait()
            self._expected = None
            self._got = {}
            await self._mqtt.publish(self.request, self._payload())
            # Wait while components keep coming; re-request when they stop.
            while not self.done.is_set():
                self._progress.clear()
                try:
                    wait_ms = self._retry_ms
                    if self._wait_s:
                        wait_ms += int(self._wait_s * 1000)
                    await asyncio.wait_for_ms(self._progress.wait(), wait_ms)
                except asyncio.TimeoutError:
                    if not self.done.is_set():
                        log.warning("configuration incomplete: requesting it again")
                    break


def start(mqtt, config):
    return RemoteConfig(mqtt, config)
