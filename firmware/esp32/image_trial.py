# The boot after a MicroPython image install (image.py, docs/management.md): the
# bootloader boots the new image once. check_boot() finds out whether it did; trial()
# confirms it with mark_app_valid_cancel_rollback() once healthy (trial.py). A reset
# before that makes the bootloader go back to the previous image. Loaded on demand.
import asyncio

import bootstate
import log
from esp32 import Partition
from fsutil import IMG_PENDING, IMG_RESULT, read_json, remove, write_json


def _finish(pending, result):
    write_json(
        IMG_RESULT, {"sha256": pending.get("sha256"), "version": pending.get("version"), "result": result}
    )
    remove(IMG_PENDING)


def check_boot():
    """At boot with an image on trial: True if it runs (trial() next); else the bootloader
    rolled it back (it crashed, hung or gave up): recorded, False."""
    pending = read_json(IMG_PENDING) or {}
    now = Partition(Partition.RUNNING).info()[4]
    if now == pending.get("partition"):
        return True
    _finish(pending, "rolled back")
    log.error(
        "MicroPython image %s rolled back: the bootloader started %s, not %s"
        % (pending.get("version"), now, pending.get("partition"))
    )
    return False


async def trial(mqtt, config, config_done, on_done):
    """Confirm the running image once healthy; else reset (the bootloader rolls back)."""
    import trial as rule

    pending = read_json(IMG_PENDING) or {}
    what = "MicroPython image %s" % pending.get("version")
    await rule.healthy(mqtt, config, config_done, what, lambda: _finish(pending, "rolled back"))
    try:
        Partition.mark_app_valid_cancel_rollback()
    except OSError as err:
        log.error("%s could not be marked valid (%r): rolling back" % (what, err))
        _finish(pending, "rolled back")
        await asyncio.sleep_ms(300)
        await mqtt.disconnect()
        bootstate.reset()
    _finish(pending, "confirmed")
    log.info("%s confirmed" % what)
    on_done()
