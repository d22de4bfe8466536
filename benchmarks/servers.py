"""Latency from HA's switch turn_off to the signed SHUTDOWN, and on to logind's PowerOff.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded with one
server. First a paho subscriber stands where the agent would be (sequential commands);
then the real agent runs against the private system bus with the fake logind, restarted
for each run. Prints p50/p99 of both.
Run: .venv/bin/python benchmarks/servers.py [runs] [path_runs]   (defaults 300 and 30)

The measurement lives in servers_ha.py and runs under pytest: Home Assistant's test
plugin must load before Home Assistant itself, which a fresh `python -m pytest` ensures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    env = dict(os.environ)
    for name, value in zip(("BENCH_RUNS", "BENCH_PATH_RUNS"), sys.argv[1:], strict=False):
        env[name] = str(int(value))
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pytest", "benchmarks/servers_ha.py", "-q", "-s"]
    command += ["-p", "tests.harness.plugin", "-p", "no:logging"]
    sys.exit(subprocess.run(command, cwd=root, env=env, check=False).returncode)
