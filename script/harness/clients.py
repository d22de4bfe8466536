"""A plain paho-mqtt client for tests: connect, collect, publish, wait."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .mosquitto import Broker


class Peer:
    """A paho client in its own network thread that records what it receives."""

    def __init__(
        self,
        broker: Broker,
        *,
        tls: bool = True,
        ca: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
    ) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(username or broker.username, password or broker.password)
        if tls:
            self.client.tls_set(ca_certs=str(ca or broker.certs.ca), cert_reqs=ssl.CERT_REQUIRED)
        self.port = broker.tls_port if tls else broker.port
        self.messages: list[paho.MQTTMessage] = []
        self._lock = threading.Condition()
        self.connect_result: ReasonCode | None = None
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            self.connect_result = rc
            self._lock.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)
            self._lock.notify_all()

    def connect(self, timeout: float = 10) -> Peer:
        """Connect and wait for the broker's answer; raise if it refuses."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        with self._lock:
            if not self._lock.wait_for(lambda: self.connect_result is not None, timeout):
                raise TimeoutError("no CONNACK")
        assert self.connect_result is not None
        if self.connect_result.is_failure:
            self.close()
            raise ConnectionRefusedError(str(self.connect_result))
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait until the broker confirmed it."""
        done = threading.Event()
        self.client.on_subscribe = lambda *_args: done.set()
        self.client.subscribe(topic, qos)
        if not done.wait(10):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until it left (QoS 0) or was acknowledged."""
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def received(self, topic: str | None = None) -> list[paho.MQTTMessage]:
        """Messages received so far, optionally on one topic."""
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_for(
        self, predicate: Callable[[list[paho.MQTTMessage]], bool], timeout: float = 10
    ) -> list[paho.MQTTMessage]:
        """Wait until `predicate(messages)` holds; return the messages."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.topic, m.payload[:80]) for m in self.messages[-20:]]
                    raise TimeoutError(f"condition not met; last messages: {got}")
                self._lock.wait(left)
            return list(self.messages)

    def wait_topic(self, topic: str, timeout: float = 10) -> paho.MQTTMessage:
        """Wait for the first message on a topic and return it."""
        self.wait_for(lambda msgs: any(m.topic == topic for m in msgs), timeout)
        return self.received(topic)[0]

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
