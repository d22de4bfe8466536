# `network` for the unix port, as strict as ports/esp32/network_wlan.c: the access point
# is there unless the file "wifi_down" exists in SHIM_INPUTS. Like the ESP32 driver, a
# station that was asked to connect rejoins by itself when the AP comes back, and
# connect() while that request is still pending (connecting or auto-reconnecting) fails
# with OSError("Wifi Internal Error") (esp_wifi_connect's ESP_ERR_WIFI_CONN); disconnect()
# ends the request. Calls are recorded like machine's.
import os

from machine import record

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
_inputs = os.getenv("SHIM_INPUTS") or "."


def _ap_up():
    try:
        os.stat(_inputs + "/wifi_down")
        return False
    except OSError:
        return True


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._requested = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._requested = False

    def connect(self, ssid=None, key=None):
        record("wlan", "connect", ssid)
        if not self._active:
            raise OSError("Wifi Not Started")
        if self._requested and not self.isconnected():
            record("wlan", "error", "internal")
            raise OSError("Wifi Internal Error")
        self._requested = True

    def disconnect(self):
        record("wlan", "disconnect")
        self._requested = False

    def isconnected(self):
        return self._active and self._requested and _ap_up()

    def status(self, param=None):
        if self.isconnected():
            return STAT_GOT_IP
        return STAT_CONNECTING if self._requested else STAT_IDLE

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        return b"\x24\x0a\xc4\xa1\xb2\xc3" if name == "mac" else None
