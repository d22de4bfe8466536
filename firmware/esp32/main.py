# Runs after boot.py. An uncaught exception is a crash: its traceback is kept on
# flash for the next boot to log, the crash counter goes up, and the node resets.
import sys

import machine

try:
    import node

    node.run()
except KeyboardInterrupt:
    print("stopped: at the REPL")
except Exception as err:
    import io

    out = io.StringIO()
    sys.print_exception(err, out)
    trace = out.getvalue()
    print(trace)
    import bootstate

    bootstate.record_crash(trace)
    import time

    time.sleep(2)  # a crash loop must not hammer the flash
    machine.reset()
