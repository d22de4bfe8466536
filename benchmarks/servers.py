"""Latency from HA's switch turn_off to the signed SHUTDOWN at a broker subscriber.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded with one
server; a paho subscriber stands where the agent would be. Prints p50/p99 over sequential
commands. Run: .venv/bin/python benchmarks/servers.py [runs]   (default 300)

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
    if len(sys.argv) > 1:
        env["BENCH_RUNS"] = str(int(sys.argv[1]))
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pytest", "benchmarks/servers_ha.py", "-q", "-s"]
    command += ["-p", "tests.harness.plugin", "-p", "no:logging"]
    sys.exit(subprocess.run(command, cwd=root, env=env, check=False).returncode)
