# Runs after boot.py. An uncaught exception is a crash: its traceback is kept on
# flash for the next boot to log, the crash counter goes up, and the node resets.
import gc
import sys

import machine

try:
    import node

    node.run()
except KeyboardInterrupt:
    print("stopped: at the REPL")
except Exception as err:
    gc.collect()  # the crashed node's objects are garbage now: room for the report
    try:
        import io

        out = io.StringIO()
        sys.print_exception(err, out)
        trace = out.getvalue()
        out = None
        print(trace)
        import bootstate

        bootstate.record_crash(trace)
    except MemoryError:
        import bootstate

        bootstate.record_crash("%s (no memory for the traceback)" % type(err).__name__)
    import time

    time.sleep(2)  # a crash loop must not hammer the flash
    machine.reset()
