"""Config serving and log ingest through Home Assistant's real MQTT client.

Real mosquitto (TLS), Home Assistant's real MQTT client, the integration loaded. Prints:
sequential config serving p50/p99; a burst of 200 nodes (p50/p99, requests/s, every
answer checked); log ingest of 20,000 messages over 50 nodes at QoS 1 and QoS 0 until
every line is on disk, against the ceiling: a no-op callback subscribed in the same HA
through HA's MQTT client, flooded alike on another base topic, the floods alternated;
the ratio per pair, its median and range, lost lines, loop lag, garbage collections and
CPU per message (ingest_ha.py); then one flood from as many made-up node ids as lines
(beyond the new-node budget), and the integration's MQTT callback timed on its own.
Run: .venv/bin/python benchmarks/nodes.py [sequential_requests] [log_messages]
Each burst and pair of floods runs BENCH_REPEATS times (3). The broker runs with
`set_tcp_nodelay true`, as docs/broker.md recommends; BENCH_BROKER_NODELAY=0 measures
mosquitto's default (Nagle on: back-to-back answers wait for HA's delayed ACKs, ~40 ms).
Also: BENCH_BURSTS (bursts, default BENCH_REPEATS), BENCH_QOS ("1 0"), BENCH_PAHO=0 (no
paho subscriber in another process, a secondary figure), BENCH_PROFILE=1 (cProfile of
every thread over the integration's floods; BENCH_PROFILE_OUT=file keeps it),
BENCH_ALONE_LEVELS ("info" times the callback without events), BENCH_BREAKDOWN=1 (the
line handler's and the events' time per flood, measured in place).

The measurement lives in nodes_ha.py and runs under pytest (see launch.py).
"""

from __future__ import annotations

import os
import sys

from launch import run_under_pytest

if __name__ == "__main__":
    os.environ.setdefault("BENCH_BROKER_NODELAY", "1")
    sys.exit(run_under_pytest("nodes_ha.py", ("BENCH_SEQUENTIAL", "BENCH_MESSAGES"), "--timeout", "900"))
