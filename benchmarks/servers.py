"""Latency from HA's switch turn_off to the signed SHUTDOWN, and on to logind's PowerOff.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded with one
server. First a paho subscriber stands where the agent would be (sequential commands);
then the real agent runs against the private system bus with the fake logind, restarted
for each run. Prints p50/p99 of both.
Run: .venv/bin/python benchmarks/servers.py [runs] [path_runs]   (defaults 300 and 30)

The measurement lives in servers_ha.py and runs under pytest (see launch.py).
"""

from __future__ import annotations

import sys

from launch import run_under_pytest

if __name__ == "__main__":
    sys.exit(run_under_pytest("servers_ha.py", ("BENCH_RUNS", "BENCH_PATH_RUNS")))
