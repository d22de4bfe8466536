"""Talk to a node's management module over MQTT (docs/management.md)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import queue
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .firmware import Firmware
from .mgmt_framing import (
    CHUNK,
    CONFIRMED,
    ROLLED_BACK,
    Reply,
    app_version,
    data_chunks,
    image_arg,
    image_verdict,
    put_arg,
    verdict,
)

# An image goes out at most this far ahead of the node's last "written" report: the
# broker queues what the node has not taken yet, and drops what exceeds its queue
# (mosquitto's max_queued_messages, 1000 messages by default).
IMAGE_WINDOW = 128 * 1024


class NodeError(Exception):
    """The node refused a command or it failed there."""


class NoAnswer(NodeError):
    """The node did not answer in time."""


class ChecksumError(NodeError):
    """Data arrived, but its SHA-256 is not the one announced."""


def signature(key: str, target: str, cmd: str, ts: int, nonce: str, arg: str = "") -> str:
    r"""HMAC-SHA256 (hex) over "<target>\\n<cmd>\\n<ts>\\n<nonce>\\n<arg>" (docs/protocol.md)."""
    text = f"{target}\n{cmd}\n{ts}\n{nonce}\n{arg}".encode()
    return hmac.new(key.encode(), text, hashlib.sha256).hexdigest()


def signed_command(key: str, node: str, cmd: str, arg: str = "", ts: int | None = None) -> tuple[str, str]:
    """(nonce, JSON payload) of a signed command."""
    ts = int(time.time()) if ts is None else ts
    nonce = secrets.token_hex(8)
    body: dict[str, str | int] = {"cmd": cmd, "ts": ts, "nonce": nonce}
    if arg:
        body["arg"] = arg
    body["sig"] = signature(key, node, cmd, ts, nonce, arg)
    return nonce, json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class Connection:
    """How to reach the broker."""

    host: str
    port: int = 8883
    ca: str | None = None
    username: str | None = None
    password: str | None = None
    insecure_plain_mqtt: bool = False
    server_hostname: str | None = None


class Node:
    """A connection to the broker, talking to one node."""

    def __init__(self, conn: Connection, base: str, node: str, key: str, timeout: float = 15) -> None:
        self.base = base
        self.node = node
        self.key = key
        self.timeout = timeout
        prefix = f"{base}/node/{node}"
        self.cmd_topic = f"{prefix}/mgmt/cmd"
        self.data_topic = f"{prefix}/mgmt/data"
        self.reply_topic = f"{prefix}/mgmt/reply"
        self.info_topic = f"{prefix}/info"
        self.log_filter = f"{base}/log/+/{node}"
        self._replies: dict[str, queue.Queue[Reply]] = {}
        self._listeners: list[Callable[[paho.MQTTMessage], None]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed: dict[int, threading.Event] = {}
        self._connect_error: str | None = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        if conn.username:
            self.client.username_pw_set(conn.username, conn.password)
        if not conn.insecure_plain_mqtt:
            self.client.tls_set(ca_certs=conn.ca, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._conn = conn

    # --- connection -----------------------------------------------------------------

    def __enter__(self) -> Node:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and subscribe to the reply topic; NodeError if the broker refuses."""
        conn = self._conn
        try:
            self.client.connect(conn.host, conn.port, keepalive=30)
        except (OSError, ssl.SSLError) as err:
            raise NodeError(f"cannot connect to the broker {conn.host}:{conn.port}: {err}") from err
        self.client.loop_start()
        if not self._connected.wait(self.timeout) or self._connect_error:
            self.close()
            raise NodeError(f"broker {conn.host}:{conn.port}: {self._connect_error or 'no answer'}")
        self.subscribe(self.reply_topic)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribe (QoS 1) and wait for the broker's acknowledgement."""
        done = threading.Event()
        with self._lock:
            result, mid = self.client.subscribe(topic, qos=1)
            if mid is None:
                raise NodeError(f"cannot subscribe to {topic}: {result}")
            self._subscribed[mid] = done
        if not done.wait(self.timeout):
            raise NodeError(f"the broker did not confirm the subscription to {topic}")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._connect_error = f"refused: {rc}"
        self._connected.set()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._lock:
            done = self._subscribed.pop(mid, None)
        if done is not None:
            done.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.reply_topic and not msg.retain:
            reply = Reply.parse(msg.payload)
            with self._lock:
                target = self._replies.get(reply.nonce) if reply else None
            if reply is not None and target is not None:
                target.put(reply)
            return
        for listener in list(self._listeners):
            listener(msg)

    # --- commands -------------------------------------------------------------------

    def send(self, cmd: str, arg: str = "") -> str:
        """Publish a signed command; return its nonce (replies carry it)."""
        nonce, payload = signed_command(self.key, self.node, cmd, arg)
        self.send_payload(nonce, payload)
        return nonce

    def send_payload(self, nonce: str, payload: str | bytes) -> None:
        """Publish a command payload as it is and collect the replies to `nonce`."""
        with self._lock:
            self._replies[nonce] = queue.Queue()
        self.client.publish(self.cmd_topic, payload, qos=1)

    def replies(self, nonce: str, timeout: float | None = None) -> Iterator[Reply]:
        """Yield the reply chunks in order, the last one included; errors raise NodeError.

        A chunk seen before (an MQTT redelivery) is dropped; a gap (one lost) raises.
        """
        q = self._replies[nonce]
        seq = 0
        try:
            while True:
                try:
                    reply = q.get(timeout=timeout or self.timeout)
                except queue.Empty:
                    raise NoAnswer(
                        f"node {self.node} did not answer within {timeout or self.timeout:g} s "
                        "(offline, wrong node id, or its clock is not set)"
                    ) from None
                if reply.kind == "err":
                    message = reply.body.decode(errors="replace")
                    if "bad signature" in message:
                        message += " (wrong key for this node?)"
                    if "checksum" in message:
                        raise ChecksumError(f"node {self.node}: {message}")
                    raise NodeError(f"node {self.node}: {message}")
                if reply.seq < seq:
                    continue  # delivered again (QoS 1): taken already
                if reply.seq > seq:
                    raise NodeError(f"reply chunk {reply.seq} arrived, expected {seq} (one was lost)")
                seq += 1
                yield reply
                if reply.kind == "ok":
                    return
        finally:
            with self._lock:
                self._replies.pop(nonce, None)

    def call(self, cmd: str, arg: str = "", timeout: float | None = None) -> bytes:
        """Run a command and return the whole reply body."""
        return b"".join(r.body for r in self.replies(self.send(cmd, arg), timeout))

    def put(self, path: str, data: bytes, progress: Callable[[int, int], None] | None = None) -> None:
        """Write a file on the node: streamed, checked by SHA-256, then renamed in place."""
        arg = put_arg(path, data)
        nonce = self.send("put", arg)
        for seq, chunk in enumerate(data_chunks(nonce, data)):
            self.client.publish(self.data_topic, chunk, qos=1)
            if progress:
                progress(min((seq + 1) * CHUNK, len(data)), len(data))
        answer = b"".join(r.body for r in self.replies(nonce)).decode()
        if answer != arg.split("\n")[-2]:  # the SHA-256 it announced
            raise ChecksumError(f"node {self.node} stored {path} with SHA-256 {answer}")

    def get(self, path: str) -> bytes:
        """Read a file from the node, checked against the SHA-256 it sends last."""
        data = bytearray()
        digest = b""
        for reply in self.replies(self.send("get", path)):
            if reply.kind == "ok":
                digest = reply.body
            else:
                data += reply.body
        if hashlib.sha256(data).hexdigest() != digest.decode():
            raise ChecksumError(f"{path}: the data received does not match the node's SHA-256")
        return bytes(data)

    def ls(self, path: str = "") -> list[tuple[str, bool, int]]:
        """(name, is a directory, size) of the entries in a directory on the node."""
        return [(n, bool(d), int(s)) for n, d, s in json.loads(self.call("ls", path))]

    def info(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the node's retained info (version, build, last update's result)."""
        got: queue.Queue[dict[str, Any]] = queue.Queue()

        def listen(msg: paho.MQTTMessage) -> None:
            if msg.topic == self.info_topic:
                with contextlib.suppress(ValueError):
                    got.put(json.loads(msg.payload))

        self._listeners.append(listen)
        try:
            self.subscribe(self.info_topic)
            return got.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise NoAnswer(f"node {self.node} has published no info") from None
        finally:
            self._listeners.remove(listen)
            self.client.unsubscribe(self.info_topic)

    def update(
        self,
        firmware: Firmware,
        progress: Callable[[int, int], None] | None = None,
        confirm_timeout: float = 300,
    ) -> dict[str, Any]:
        """Stage, verify and install a firmware; wait until the node confirms or rolls back."""
        total = sum(len(d) for d in firmware.files.values())
        done = 0
        for name, data in sorted(firmware.files.items()):
            self.put(f"fw_new/{name}", data)
            done += len(data)
            if progress:
                progress(done, total)
        manifest = firmware.manifest()
        self.put("fw_new/manifest.json", manifest)
        got, listen = self._live_infos()
        try:
            self.call("update", hashlib.sha256(manifest).hexdigest(), timeout=60)
            deadline = time.monotonic() + confirm_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoAnswer(f"node {self.node} did not confirm firmware {firmware.version}")
                try:
                    info = got.get(timeout=left)
                except queue.Empty:
                    continue
                end = verdict(info.get("update") or {}, info.get("build"), firmware.version, firmware.build)
                if end == ROLLED_BACK:
                    raise NodeError(
                        f"node {self.node} rolled back firmware {firmware.version}: "
                        "it did not become healthy (see its log)"
                    )
                if end == CONFIRMED:
                    return info
        finally:
            self._listeners.remove(listen)

    def _live_infos(self) -> tuple[queue.Queue[dict[str, Any]], Callable[[paho.MQTTMessage], None]]:
        """Return a queue of the info messages published from now on (not the retained one)."""
        got: queue.Queue[dict[str, Any]] = queue.Queue()

        def listen(msg: paho.MQTTMessage) -> None:
            if msg.topic == self.info_topic and msg.payload and not msg.retain:
                with contextlib.suppress(ValueError):
                    got.put(json.loads(msg.payload))

        self._listeners.append(listen)
        self.subscribe(self.info_topic)
        return got, listen

    def image(
        self,
        data: bytes,
        progress: Callable[[int, int], None] | None = None,
        confirm_timeout: float = 300,
    ) -> dict[str, Any]:
        """Install a MicroPython app image; wait until the node confirms it or rolls back.

        Returns the node's info once it runs the image confirmed. NodeError if `data` is
        not an ESP32 app image, if the node refuses it, or if it rolled back.
        """
        version = app_version(data)
        if version is None:
            raise NodeError("not an ESP32 app image with an app descriptor (a MicroPython .app-bin)")
        arg = image_arg(data, version)
        digest = arg.split("\n", 1)[0]
        infos, listen = self._live_infos()
        try:
            nonce = self.send("image", arg)
            replies = self.replies(nonce, timeout=60)
            written = sent = 0
            for chunk in data_chunks(nonce, data):
                while sent - written >= IMAGE_WINDOW:
                    reply = next(replies)
                    if reply.kind == "ok":
                        raise NodeError(f"node {self.node} ended the image transfer early")
                    written = int(reply.body.split()[-1])
                    if progress:
                        progress(written, len(data))
                self.client.publish(self.data_topic, chunk, qos=1)
                sent = min(sent + CHUNK, len(data))
            for reply in replies:
                if reply.kind == "more":
                    if progress:
                        progress(int(reply.body.split()[-1]), len(data))
                elif reply.body.decode() != digest:
                    raise ChecksumError(f"node {self.node} wrote the image with SHA-256 {reply.body!r}")
            if progress:
                progress(len(data), len(data))
            return self._image_end(infos, digest, version, confirm_timeout)
        finally:
            self._listeners.remove(listen)

    def _image_end(
        self, infos: queue.Queue[dict[str, Any]], digest: str, version: str, timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                info = infos.get(timeout=left)
            except queue.Empty:
                break
            end = image_verdict(info.get("image") or {}, digest)
            if end == ROLLED_BACK:
                raise NodeError(
                    f"node {self.node} rolled back MicroPython image {version}: it did not run "
                    "healthily (see its log)"
                )
            if end == CONFIRMED:
                return info
        raise NoAnswer(f"node {self.node} did not confirm MicroPython image {version}")

    def logs(self, callback: Callable[[str, str], None]) -> None:
        """Call callback(level, line) for each log line the node publishes."""
        prefix = f"{self.base}/log/"

        def listen(msg: paho.MQTTMessage) -> None:
            if msg.topic.startswith(prefix):
                callback(msg.topic[len(prefix) :].split("/", 1)[0], msg.payload.decode(errors="replace"))

        self._listeners.append(listen)
        self.subscribe(self.log_filter)
