"""Real components for the tests: mosquitto, a private system bus, MicroPython.

Plain Python (3.11+), no Home Assistant imports: the agent's tests run on the
servers' Python 3.11 too. Every process is started on loopback and stopped by PID.
"""
