# `network` for the unix port: a station interface that is connected unless the
# file "wifi_down" exists in SHIM_INPUTS. Calls are recorded like machine's.
import os

from machine import record

STA_IF = 0
AP_IF = 1
_inputs = os.getenv("SHIM_INPUTS") or "."


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._joined = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid=None, key=None):
        record("wlan", "connect", ssid)
        self._joined = True

    def disconnect(self):
        record("wlan", "disconnect")
        self._joined = False

    def isconnected(self):
        try:
            os.stat(_inputs + "/wifi_down")
            return False
        except OSError:
            return self._active and self._joined

    def status(self, param=None):
        return 1010 if self.isconnected() else 1001

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        return b"\x24\x0a\xc4\xa1\xb2\xc3" if name == "mac" else None
