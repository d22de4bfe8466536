"""Latency from HA's switch turn_off to the signed SHUTDOWN at a broker subscriber.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded with one
server; a paho subscriber stands where the agent would be. Prints p50/p99 over sequential
commands. Run: .venv/bin/python benchmarks/servers.py [runs]   (default 300)

The measurement lives in servers_ha.py: Home Assistant's test plugin must load before
Home Assistant itself, so this launcher imports nothing of it and hands over to pytest.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["BENCH_RUNS"] = str(int(sys.argv[1]))
    here = Path(__file__).resolve().parent
    os.chdir(here.parent)
    sys.exit(
        pytest.main(
            [str(here / "servers_ha.py"), "-q", "-s", "-p", "tests.harness.plugin", "-p", "no:logging"]
        )
    )
