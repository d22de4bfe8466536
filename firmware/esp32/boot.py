# First code after reset: drive the relay pin inactive before anything else runs.
# (Until here the pin is an input; pick a pin with a pull resistor that keeps the
# relay off at reset, see docs/firmware.md.) Pin and polarity come from board.py
# only: a served configuration cannot change them.
import machine


def _relay_off():
    from board import BOARD

    relay = BOARD.get("relay") or {}
    if relay.get("pin") is not None:
        machine.Pin(relay["pin"], machine.Pin.OUT, value=0 if relay.get("active", 1) else 1)


try:
    _relay_off()
except Exception as err:
    print("boot.py: could not set the relay pin: %r" % err)
