"""Flood publisher and plain subscriber for benchmarks/nodes.py, in their own processes.

Own processes so neither shares Home Assistant's interpreter lock.
  publish  <port> <user> <password> <ca> <qos> <messages> <nodes>
  count    <port> <user> <password> <ca> <qos> <messages>   (prints time of the last, count)
  tail     <log file> <offset> <messages>   (prints time, lines and distinct numbers on disk)
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def _client(port: str, user: str, password: str, ca: str, name: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
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


def publish(port: str, user: str, password: str, ca: str, qos: str, messages: str, nodes: str) -> None:
    client = _client(port, user, password, ca, "bench-flood")
    levels = ("info", "warning", "error")
    infos = [
        client.publish(
            f"home/log/{levels[i % 3]}/n{i % int(nodes)}",
            f"bench message {i} with some text to look like a log line",
            qos=int(qos),
        )
        for i in range(int(messages))
    ]
    for info in infos:
        info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


def count(port: str, user: str, password: str, ca: str, qos: str, messages: str) -> None:
    """Print `<wall time of the last message> <messages received>` once all arrived or 15 s idle."""
    expected = int(messages)
    state = {"count": 0, "last": 0.0}
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: Any, _m: paho.MQTTMessage) -> None:
        state["count"] += 1
        state["last"] = time.time()

    client = _client(port, user, password, ca, f"bench-ceiling-{qos}")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.subscribe("home/log/+/+", int(qos))
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
    with open(path, "rb") as file:
        inode = os.fstat(file.fileno()).st_ino
        file.seek(int(offset))
        rest = b""
        last_change = time.time()
        print("ready", flush=True)
        while len(numbers) < expected:
            data = file.read()
            now = time.time()
            if data:
                data, rest = rest + data, b""
                end = data.rfind(b"\n") + 1
                data, rest = data[:end], data[end:]
                lines += data.count(b"\n")
                numbers.update(pattern.findall(data))
                last_change = now
                if len(numbers) >= expected:
                    break
            elif now - last_change > 15:
                now = last_change
                break
            if os.stat(path).st_ino != inode:
                raise SystemExit(f"{path} was rotated during the flood")
            time.sleep(0.02)
    print(f"{now:.6f} {lines} {len(numbers)}", flush=True)


if __name__ == "__main__":
    {"publish": publish, "count": count, "tail": tail}[sys.argv[1]](*sys.argv[2:])  # type: ignore[operator]
