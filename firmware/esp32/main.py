# Runs after boot.py. Safe mode is decided here, before the big imports (bootstate.py).
# An uncaught exception is a crash: its traceback is kept on flash for the next boot
# to log, the crash counter goes up, and the node resets. In safe mode a node that
# cannot even be imported stops at the REPL instead of resetting for ever.
import gc
import sys

import bootstate


def _firmware_trial():
    # An update on trial (fwupdate.py): the first boot runs it; a second boot before it
    # was confirmed healthy means it crashed, hung or never got healthy: restore the
    # previous files. Kept here because updates never replace main.py.
    import json
    import os

    try:
        with open("fw_pending.json") as f:
            pending = json.load(f)
    except (OSError, ValueError):
        return
    if pending.get("state") == "trial" and not pending.get("boots"):
        pending["boots"] = 1
        with open("fw_pending.json", "w") as f:
            json.dump(pending, f)
        return
    for name in pending.get("files", ()):
        old = "fw_old/" + name
        try:
            os.stat(old)
        except OSError:
            continue  # not backed up (yet): the file in place is the old one
        try:
            os.rename(old, name)  # replaces the new file atomically (littlefs, unix)
        except OSError:
            try:
                os.remove(name)
            except OSError:
                pass
            os.rename(old, name)  # a power loss before this: the next boot retries
    for name in pending.get("new", ()):
        try:
            os.remove(name)
        except OSError:
            pass
    with open("fw_result.json", "w") as f:
        json.dump({"result": "rolled back", "version": pending.get("version")}, f)
    os.remove("fw_pending.json")
    print("firmware %s was not confirmed: previous firmware restored" % pending.get("version"))
    bootstate.reset()


state = node = None
try:
    _firmware_trial()
    _firmware_trial = None  # its code is garbage now: heap for the node
    state = bootstate.BootState()
    bootstate.load_names()  # before the big imports, while the heap is whole
    import node

    node.run(state)
except KeyboardInterrupt:
    print("stopped: at the REPL")
except Exception as err:
    import asyncio

    asyncio.new_event_loop()  # drops the node's tasks, and with them its objects
    gc.collect()  # the crashed node's objects are garbage now: room for the report
    try:
        import io

        out = io.StringIO()
        sys.print_exception(err, out)
        trace = out.getvalue()
        out = None
        print(trace)
        bootstate.record_crash(trace)
    except MemoryError:
        bootstate.record_crash("%s (no memory for the traceback)" % type(err).__name__)
    if node is None and state is not None and state.safe:
        # Safe mode cannot run without the node: a reset would only fail the same way.
        print("safe mode: the node cannot be imported; stopped at the REPL (relay off)")
    else:
        import time

        time.sleep(2)  # a crash loop must not hammer the flash
        bootstate.reset()
