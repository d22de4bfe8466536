"""The test bed shared by tests/, benchmarks/ and script/develop: real components.

mosquitto, a private system bus with a fake logind, MicroPython's unix ports with the
ESP32 shims (board.py, shim/), a real `hass` (hass_process.py), the demo and Chromium.
The modules the agent's tests use are plain Python 3.11 without Home Assistant
imports (hass_process.py and browser.py are for the 3.14 venv only). Every process is
started on loopback and stopped by PID.
"""
