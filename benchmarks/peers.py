"""The nodes' side of benchmarks/nodes.py, in processes of their own.

Own processes so none shares Home Assistant's interpreter lock (real nodes are other
machines).
  configs  <port> <user> <password> <ca> <sequential> <burst>   (see `configs`)
  publish  <port> <user> <password> <ca> <qos> <messages> <nodes> <base>   (prints ready, waits for a line)
  count    <port> <user> <password> <ca> <qos> <messages> <protocol> <base>   (prints time of the last, count)
  tail     <log file> <offset> <messages>   (prints time, lines and distinct numbers on disk)
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def _client(port: str, user: str, password: str, ca: str, name: str, mqtt5: bool = False) -> paho.Client:
    protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol)
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", int(port))
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("no CONNACK")
    return client


def expected(node: str) -> bytes:
    """The answer for the configuration nodes_ha.py writes for `node`."""
    return json.dumps(
        {
            "button": {"component": "Button", "pin": 4},
            "htu": {"component": "HTU21D", "i2c": 1},
            "led": {"component": "LED", "pin": 2, "node": node},
            "_order": ["button", "htu", "led"],
        },
        separators=(",", ":"),
    ).encode()


def configs(port: str, user: str, password: str, ca: str, sequential: str, burst: str) -> None:
    """Ask for configurations as nodes do (QoS 0 requests) and check every answer.

    Prints `ready` once HA answers; then for each line `sequential` or `burst` read from
    stdin runs that phase and prints its latencies in seconds as one JSON list (the
    burst's list ends with its requests per second). Nodes n0 .. n<burst - 1>.
    """
    nodes = int(burst)
    arrived: dict[str, tuple[float, bytes]] = {}
    cond = threading.Condition()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with cond:
            arrived[msg.topic] = (time.perf_counter(), msg.payload)
            cond.notify_all()

    def wait(topics: set[str], timeout: float = 60) -> None:
        with cond:
            if not cond.wait_for(lambda: topics <= arrived.keys(), timeout):
                raise SystemExit(f"{len(topics - arrived.keys())} answers missing")

    def check(topic: str) -> None:
        node = topic.rsplit("/", 1)[1]
        if arrived[topic][1] != expected(node):
            raise SystemExit(f"wrong answer for {node}: {arrived[topic][1]!r}")

    client = _client(port, user, password, ca, "bench-nodes")
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.subscribe("home/login/+", 0)
    subscribed.wait(10)
    # HA debounces SUBSCRIBE: ask until the first answer
    deadline = time.monotonic() + 20
    while "home/login/n0" not in arrived:
        if time.monotonic() > deadline:
            raise SystemExit("no answer from HA")
        client.publish("home/login/n0/set", '"1"', qos=0)
        time.sleep(0.3)
    print("ready", flush=True)
    for phase in sys.stdin:
        with cond:
            arrived.clear()
        results: list[float] = []
        if phase.strip() == "sequential":
            for i in range(int(sequential)):
                topic = f"home/login/n{i % nodes}"
                with cond:
                    arrived.pop(topic, None)
                start = time.perf_counter()
                client.publish(topic + "/set", '"1"', qos=0)
                wait({topic})
                check(topic)
                results.append(arrived[topic][0] - start)
        else:
            sent: dict[str, float] = {}
            first = time.perf_counter()
            for i in range(nodes):
                sent[f"home/login/n{i}"] = time.perf_counter()
                client.publish(f"home/login/n{i}/set", '"1"', qos=0)
            wait(set(sent))
            for topic in sent:
                check(topic)
            last = max(at for at, _p in arrived.values())
            results = [arrived[t][0] - s for t, s in sent.items()]
            results.append(nodes / (last - first))
        print(json.dumps(results), flush=True)
    client.disconnect()
    client.loop_stop()


def publish(
    port: str, user: str, password: str, ca: str, qos: str, messages: str, nodes: str, base: str
) -> None:
    """Connect, print `ready`, and flood once a line arrives on stdin (no start-up in the figures)."""
    client = _client(port, user, password, ca, "bench-flood")
    levels = ("info", "warning", "error")
    print("ready", flush=True)
    sys.stdin.readline()
    infos = [
        client.publish(
            f"{base}/log/{levels[i % 3]}/n{i % int(nodes)}",
            f"bench message {i} with some text to look like a log line",
            qos=int(qos),
        )
        for i in range(int(messages))
    ]
    for info in infos:
        info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


def count(
    port: str, user: str, password: str, ca: str, qos: str, messages: str, protocol: str, base: str
) -> None:
    """Print `<wall time of the last message> <messages received>` once all arrived or 15 s idle.

    `protocol` is "5" or "3.1.1": the ceiling speaks what HA's connection speaks.
    """
    expected = int(messages)
    state = {"count": 0, "last": 0.0}
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: Any, _m: paho.MQTTMessage) -> None:
        state["count"] += 1
        state["last"] = time.time()

    client = _client(port, user, password, ca, f"bench-ceiling-{qos}", mqtt5=protocol == "5")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.subscribe(f"{base}/log/+/+", int(qos))
    subscribed.wait(10)
    print("ready", flush=True)
    while state["count"] < expected and (not state["last"] or time.time() - state["last"] < 15):
        time.sleep(0.01)
    print(f"{state['last']:.6f} {state['count']}", flush=True)
    client.disconnect()
    client.loop_stop()


def tail(path: str, offset: str, messages: str) -> None:
    """Print `<wall time> <lines> <distinct>` once every flood message number is on disk.

    Reads only what was appended to `path` after `offset` (the log is not rotated during
    the flood: the benchmark sets its maximum size to 1 GiB). If the numbers stop
    growing for 15 s, the time of the last growth is printed (lost lines).
    """
    expected = int(messages)
    numbers: set[bytes] = set()
    lines = 0
    pattern = re.compile(rb"\] bench message (\d+) with")
    chunks: list[bytes] = []
    with open(path, "rb") as file:
        inode = os.fstat(file.fileno()).st_ino
        file.seek(int(offset))
        last_change = time.time()
        print("ready", flush=True)
        while len(numbers) < expected:
            data = file.read()
            now = time.time()
            if data:
                chunks.append(data)
                lines += data.count(b"\n")
                last_change = now
                # the numbers are read once there are enough lines: light while HA writes
                if lines >= expected:
                    numbers = set(pattern.findall(b"".join(chunks)))
                    if len(numbers) >= expected:
                        break
            elif now - last_change > 15:
                now = last_change
                numbers = set(pattern.findall(b"".join(chunks)))
                break
            if os.stat(path).st_ino != inode:
                raise SystemExit(f"{path} was rotated during the flood")
            time.sleep(0.005)  # the time on disk is known to 5 ms
    print(f"{now:.6f} {lines} {len(numbers)}", flush=True)


if __name__ == "__main__":
    {"configs": configs, "publish": publish, "count": count, "tail": tail}[sys.argv[1]](*sys.argv[2:])  # type: ignore[operator]
