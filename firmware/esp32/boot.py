# First code after reset: drive the relay pin inactive before anything else runs.
# (Until here the pin is an input; pick a pin with a pull resistor that keeps the
# relay off at reset, see docs/firmware.md.)
import machine


def _relay_off():
    from board import BOARD

    relay = dict(BOARD.get("relay") or {})
    try:
        import json

        # The cached remote configuration wins, as it will in main.py.
        with open("remote_config.json") as f:
            relay.update(json.load(f).get("relay") or {})
    except (OSError, ValueError, AttributeError):
        pass
    if relay.get("pin") is not None:
        machine.Pin(relay["pin"], machine.Pin.OUT, value=0 if relay.get("active", 1) else 1)


try:
    _relay_off()
except Exception as err:
    print("boot.py: could not set the relay pin: %r" % err)
