# The node: configuration, MQTT, logging and remote configuration always; relay, power
# sense, alarms, power commands (relay, WOL) and reachability unless the node is in safe
# mode (decided by main.py with bootstate.py).
import asyncio
import gc
import json
import sys
from time import ticks_diff, ticks_ms

import bootstate
import clock
import log
import machine
import remote_config
import settings
import sign
import topics
from mqtt import MQTT, ONLINE

VERSION = remote_config.VERSION
MODULES = ("relay", "power_sense", "alarms", "reach")


class Node:
    def __init__(self, state):
        self.state = state
        self.cached = remote_config.relevant(remote_config.load_cache())
        self.config = config = settings.load(self.cached)
        self.safe = state.safe
        self.base = config["base"]
        self.id = config["node_id"]
        self.mqtt = MQTT(config, self.id, topics.node_topic(config, "status"))
        self.failure = None
        self._failed = asyncio.Event()
        self.mem_peak = 0
        self.modules = {}
        self.manager = None
        self._mgmt_verifier = None
        self._mgmt_refusing = 0  # refusal replies in flight
        fw = bootstate.read_json("firmware.json") or {}
        self.firmware = str(fw.get("version") or VERSION)
        self.build = str(fw.get("build") or "")
        self.update = bootstate.read_json("fw_result.json")  # the last update's result (mgmt.py)
        self.image = _image_state()  # the last MicroPython image install (image.py)
        self.clock_from = clock.restore()  # before any TLS: certificate dates are checked
        self.clock_set = False  # by NTP, this boot
        self.mqtt.before_connect = self._clock_before_tls

    def _topic(self, leaf):
        return topics.node_topic(self.config, leaf)

    def _on_task_error(self, loop, context):
        # A module task that dies is a crash: main.py records it and reboots.
        if self.failure is None:
            self.failure = context.get("exception") or RuntimeError(context.get("message"))
        self._failed.set()

    def info(self):
        gc.collect()  # report live data, not garbage
        peak, self.mem_peak = self.mem_peak, 0  # the peak since the last report
        info = {
            "version": self.firmware,
            "build": self.build,
            "update": self.update,
            "micropython": "%d.%d.%d" % sys.implementation.version[:3],
            "uptime_s": bootstate.uptime_s(),
            "reset_cause": self.state.cause,
            "crashes": self.state.crashes,
            "safe_mode": self.safe,
            "modules": list(self.modules),
            "mem_alloc": gc.mem_alloc(),
            "mem_free": gc.mem_free(),
            "mem_peak": peak,
            "log_pending": log.pending()[0],
            "connects": self.mqtt.connects,
        }
        if self.image:
            info["image"] = self.image
        return json.dumps(info)

    def _on_refresh(self, topic, payload, retained):
        if not retained:
            asyncio.create_task(self._republish())

    async def _republish(self):
        await self.mqtt.publish(self._topic("status"), ONLINE, retain=True, qos=1)
        await self._publish_info()

    async def _publish_info(self):
        # Retained: HA's update entity reads the installed version from it.
        await self.mqtt.publish(self._topic("info"), self.info(), retain=True, qos=1)

    def _on_connect(self):
        asyncio.create_task(self._publish_info())

    def _on_mgmt(self, topic, payload, retained):
        if self.manager is None:
            if topic.endswith("/data"):
                return  # no transfer can be running
            if not self._mgmt_precheck(payload, retained):
                return
            import mgmt

            self.manager = mgmt.Manager(self.mqtt, self.config)
            gc.collect()
        self.manager.on_message(topic, payload, retained)

    def _mgmt_precheck(self, payload, retained):
        # The management module's heap only for a command that checks out (mgmt.py
        # checks it again and takes its nonce): a flood of bad ones costs a parse each.
        verifier = self._mgmt_verifier
        if verifier is None:
            mgmt_cfg = self.config.get("mgmt") or {}
            verifier = self._mgmt_verifier = sign.Verifier(
                self.config.get("key"), self.id, mgmt_cfg.get("max_skew_s", 30)
            )
        try:
            verifier.check(payload, retained, keep=False)
            return True
        except sign.Refused as err:
            log.warning("management command refused: %s" % err)
            if verifier.nonce and not retained and self._mgmt_refusing < 4:
                # answered (like mgmt.py does) so the sender learns why; a flood of
                # refusals is not queued up
                self._mgmt_refusing += 1
                asyncio.create_task(self._mgmt_refuse("%s 0 err\nrefused: %s" % (verifier.nonce, err)))
            return False

    async def _mgmt_refuse(self, reply):
        try:
            await self.mqtt.publish(self._topic("mgmt/reply"), reply, qos=1)
        finally:
            self._mgmt_refusing -= 1

    def _on_confirmed(self):
        # the trial's code ends with this call: its modules are garbage once it returns
        for name in ("fwupdate", "image_trial", "trial"):
            sys.modules.pop(name, None)
        self.update = bootstate.read_json("fw_result.json")
        self.image = _image_state()
        asyncio.create_task(self._publish_info())

    async def _watchdog(self):
        wdt = machine.WDT(timeout=int(self.config["watchdog_s"]) * 1000)
        ok_since = None
        stable_ms = int(self.config["stable_s"]) * 1000
        while True:
            ok = self.mqtt.healthy()
            self.state.net_down(not ok)
            if ok:
                # Fed only while the broker answers: a node that cannot reach it
                # for watchdog_s reboots, the last resort against a wedged stack.
                wdt.feed()
                if ok_since is None:
                    ok_since = ticks_ms()
                elif ticks_diff(ticks_ms(), ok_since) > stable_ms:
                    self.state.stable()
            else:
                ok_since = None
            await asyncio.sleep_ms(1000)

    async def _housekeeping(self):
        tick = 0
        while True:
            bootstate.uptime_s()  # often enough to count every ticks_ms wrap
            alloc = gc.mem_alloc()
            if alloc > self.mem_peak:
                self.mem_peak = alloc
            tick += 1
            if tick % 50 == 0:
                gc.collect()
            await asyncio.sleep_ms(100)

    async def _sync_clock(self):
        try:
            await clock.sync(self.config["ntp_host"])
        except Exception as err:  # a bad answer too: the node runs on, NTP is retried
            log.warning("NTP failed (%r): signed commands wait for the clock" % err)
            return False
        self.clock_set = True
        log.debug("clock set by NTP: %d" % sign.unix_time())
        return True

    async def _clock_before_tls(self):
        # MQTT runs this once WiFi is up, before each TLS handshake until NTP worked.
        if not self.clock_set:
            await self._sync_clock()

    async def _clock(self):
        # Signed commands need Unix time: kept right by NTP twice a day.
        while True:
            await self.mqtt.up.wait()
            await asyncio.sleep(43200 if self.clock_set else 60)
            await self._sync_clock()

    def _report_boot(self):
        state = self.state
        log.info(
            "boot: firmware %s (%s), node %s, reset cause: %s"
            % (self.firmware, self.build, self.id, state.cause)
        )
        if self.update and self.update.get("result") == "rolled back":
            log.error(
                "firmware update to %s rolled back: it did not become healthy" % self.update.get("version")
            )
        if state.hang:
            log.error("the watchdog reset the node while MQTT worked: it hung")
        if state.trace:
            log.error("crash before the last reboot:\n%s" % state.trace)
        if self.safe:
            log.critical(
                "safe mode after %d crash boots: only network, MQTT, logging and configuration run"
                % state.crashes
            )
        if self.cached is not None:
            log.info("using the cached configuration until HA answers")
        if self.clock_from:
            log.info("clock set to the last time known until NTP answers: %d" % self.clock_from)

    def _start_modules(self):
        config = self.config
        for name in MODULES:
            if config.get(name):
                started = __import__(name).start(self.mqtt, config)
                if started is not None:  # None: refused, the reason logged
                    self.modules[name] = started
                gc.collect()
        relay = self.modules.get("relay")
        wol_section = isinstance(config.get("wol"), dict)
        if relay or wol_section:
            # signed commands: a relay's PRESS/HOLD, and WOL (also on a node without a relay)
            import commands

            listener = commands.start(self.mqtt, config, relay)
            if wol_section:
                self.modules["wol"] = listener
            gc.collect()

    async def main(self):
        asyncio.get_event_loop().set_exception_handler(self._on_task_error)
        mqtt = self.mqtt
        log.start(mqtt, self.config)
        self._report_boot()
        image = self.image and self.image.get("result") == "trial" and self._image_booted()
        mqtt.subscribe(self._topic("refresh"), self._on_refresh)
        mqtt.on_connect.append(self._on_connect)
        asyncio.create_task(mqtt.run())
        asyncio.create_task(self._watchdog())
        asyncio.create_task(self._housekeeping())
        asyncio.create_task(self._clock())
        remote = remote_config.start(mqtt, self.config)
        # Management runs in safe mode too: it is how a broken node gets fixed.
        # Its module is loaded on the first command: most nodes never need its heap.
        mgmt_topic = self._topic("mgmt/")
        mqtt.subscribe(mgmt_topic + "cmd", self._on_mgmt, qos=1)
        mqtt.subscribe(mgmt_topic + "data", self._on_mgmt, qos=1)
        self._start_trials(remote, image)
        used = self.cached
        if used is None and not self.safe:
            # First boot: wait a while for HA's configuration before driving pins.
            try:
                await asyncio.wait_for(
                    remote.done.wait(), float(self.config["config"].get("boot_wait_s", 20))
                )
                used = remote.components
                settings.apply_remote(self.config, used)
            except asyncio.TimeoutError:
                log.warning("no configuration from HA yet: starting with the board configuration")
        if not self.safe:
            self._start_modules()
            await mqtt.subscribed()
        gc.collect()
        # Collect early, before the heap is full: less fragmentation on a small heap.
        # The threshold counts bytes allocated since the last collection (py/gc.c
        # restarts the count at each one), not the heap in use.
        gc.threshold(max(2048, gc.mem_free() // 4))
        log.info("running: %s" % (", ".join(self.modules) or "no modules"))
        changed = asyncio.create_task(self._await_change(remote, used))
        await self._failed.wait()
        changed.cancel()
        if self.failure == "reboot":
            await mqtt.disconnect()
            bootstate.reset()
        raise self.failure

    def _image_booted(self):
        import image_trial

        booted = image_trial.check_boot()  # else the bootloader rolled it back
        self.image = _image_state()
        if not booted:
            sys.modules.pop("image_trial", None)
        return booted

    def _start_trials(self, remote, image):
        # here, not in main(): its locals live as long as the node, these modules not
        if bootstate.read_json("fw_pending.json") is not None:
            import fwupdate

            asyncio.create_task(fwupdate.trial(self.mqtt, self.config, remote.done, self._on_confirmed))
        if image:
            import image_trial

            asyncio.create_task(image_trial.trial(self.mqtt, self.config, remote.done, self._on_confirmed))

    async def _await_change(self, remote, used):
        await remote.done.wait()
        # An empty answer to a node that started with the board configuration changes
        # nothing: no restart (it would interrupt a relay press for nothing).
        unchanged = used is None and not remote.components and not self.safe
        if remote.components != used and not unchanged:
            if self.safe:
                self.state.stable()  # a new configuration: try the normal mode again
            log.info("configuration changed: restarting to apply it")
            await asyncio.sleep_ms(200)  # let the log line go out
            self.failure = "reboot"
            self._failed.set()


def _image_state():
    # info["image"]: on trial, or how the last install ended (image.py writes both files)
    pending = bootstate.read_json("img_pending.json")
    if pending is not None:
        return {"sha256": pending.get("sha256"), "version": pending.get("version"), "result": "trial"}
    return bootstate.read_json("img_result.json")


def run(state):
    node = Node(state)
    try:
        asyncio.run(node.main())
    except Exception as err:
        # A crash: main.py resets next, a planned disconnect. OFFLINE now, or the Will
        # comes only when the broker notices the dead connection.
        try:
            asyncio.run(asyncio.wait_for_ms(node.mqtt.disconnect(), 3000))
        except Exception:  # noqa: S110 (best effort: the crash report matters more)
            pass
        raise err
