"""Config serving and log ingest through Home Assistant's real MQTT client.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded. Prints:
sequential config serving p50/p99; a burst of 200 nodes (p50/p99, requests/s, every
answer checked); log ingest of 20,000 messages over 50 nodes at QoS 0 and QoS 1 until
every line is on disk, beside a plain paho subscriber on the same broker in the same
flood (the ceiling), the ratio, and the worst event-loop lag during each flood.
Run: .venv/bin/python benchmarks/nodes.py [sequential_requests] [log_messages]

The measurement lives in nodes_ha.py and runs under pytest: Home Assistant's test
plugin must load before Home Assistant itself, which a fresh `python -m pytest` ensures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    env = dict(os.environ)
    for name, value in zip(("BENCH_SEQUENTIAL", "BENCH_MESSAGES"), sys.argv[1:], strict=False):
        env[name] = str(int(value))
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pytest", "benchmarks/nodes_ha.py", "-q", "-s"]
    command += ["-p", "tests.harness.plugin", "-p", "no:logging", "--timeout", "900"]
    sys.exit(subprocess.run(command, cwd=root, env=env, check=False).returncode)
