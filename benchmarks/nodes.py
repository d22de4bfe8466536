"""Config serving and log ingest through Home Assistant's real MQTT client.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded. Prints:
sequential config serving p50/p99; a burst of 200 nodes (p50/p99, requests/s, every
answer checked); log ingest of 20,000 messages over 50 nodes at QoS 0 and QoS 1 until
every line is on disk, beside a plain paho subscriber on the same broker in the same
flood (the ceiling), the ratio, and the worst event-loop lag during each flood; then one
flood from as many made-up node ids as lines (beyond the new-node budget).
Run: .venv/bin/python benchmarks/nodes.py [sequential_requests] [log_messages]
Each burst and flood runs BENCH_REPEATS times (3). The broker runs with
`set_tcp_nodelay true`, as docs/broker.md recommends; BENCH_BROKER_NODELAY=0 measures
mosquitto's default (Nagle on: back-to-back answers wait for HA's delayed ACKs, ~40 ms).

The measurement lives in nodes_ha.py and runs under pytest (see launch.py).
"""

from __future__ import annotations

import os
import sys

from launch import run_under_pytest

if __name__ == "__main__":
    os.environ.setdefault("BENCH_BROKER_NODELAY", "1")
    sys.exit(run_under_pytest("nodes_ha.py", ("BENCH_SEQUENTIAL", "BENCH_MESSAGES"), "--timeout", "900"))
