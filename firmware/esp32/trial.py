# The health rule for an update on trial (fwupdate.py: files, image.py: MicroPython):
# MQTT up and HA's configuration arrived, for mgmt.confirm_s in a row. Not healthy
# within mgmt.trial_s: OFFLINE, disconnect and a planned reset, which rolls it back.
import asyncio
from time import ticks_diff, ticks_ms

import bootstate
import log


async def healthy(mqtt, config, config_done, what, before_reset=None):
    """Return once healthy for confirm_s; reset after trial_s (before_reset() first)."""
    cfg = config.get("mgmt") or {}
    confirm_ms = int(cfg.get("confirm_s", 60)) * 1000
    trial_ms = int(cfg.get("trial_s", 600)) * 1000
    start = ticks_ms()
    healthy_since = None
    while True:
        now = ticks_ms()
        if not (mqtt.healthy() and config_done.is_set()):
            healthy_since = None
        elif healthy_since is None:
            healthy_since = now
        elif ticks_diff(now, healthy_since) >= confirm_ms:
            return
        if ticks_diff(now, start) > trial_ms:
            log.error("%s did not become healthy: rolling back" % what)
            if before_reset is not None:
                before_reset()
            await asyncio.sleep_ms(300)  # let the log line go out
            await mqtt.disconnect()  # OFFLINE first: a planned reset
            bootstate.reset()
        await asyncio.sleep_ms(500)
