"""The firmware manager: nodes' infos, the bundled firmware, and installs over management.

One `FirmwareManager` per hub entry follows every node's retained `info` and keeps a
`NodeFirmware` per node: its installed version, and (with the node's key) the install
of the bundled firmware over the management topics (docs/management.md): signed
commands, chunked puts, ordered reply chunks, then the node's verdict on its `info`.
It reaches MQTT only through a `Link`, so whoever owns the entry's subscriptions
decides how they are made. The framing itself is in mgmt_framing.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.exceptions import HomeAssistantError

from . import protocol
from .const import DOMAIN, LOGGER
from .helpers import WarnOnce, payload_bytes
from .mgmt_framing import CONFIRMED, ROLLED_BACK, Reply, data_chunks, put_arg, verdict

BUNDLE_DIR = Path(__file__).parent / "firmware"
REPLY_TIMEOUT_S = 30
CONFIRM_TIMEOUT_S = 900
MAX_INFO_PAYLOAD = 4096
MAX_VERSION = 64

type Handler = Callable[[mqtt.ReceiveMessage], None]
type NodeHandler = Callable[[str, mqtt.ReceiveMessage], None]


@dataclass(frozen=True, slots=True)
class Link:
    """The manager's way to MQTT, given by whoever owns the entry's subscriptions.

    subscribe_nodes(leaf, handle): `<base>/node/+/<leaf>`, valid node ids only, until unload;
    subscribe_node(node, leaf, handle): one node's topic, returning once the broker has it;
    publish(topic, payload): QoS 1. Both subscribes return the unsubscribe callback.
    """

    subscribe_nodes: Callable[[str, NodeHandler], Awaitable[CALLBACK_TYPE]]
    subscribe_node: Callable[[str, str, Handler], Awaitable[CALLBACK_TYPE]]
    publish: Callable[[str, bytes | str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Bundle:
    """The firmware shipped with the integration: manifest, files, release notes."""

    version: str
    build: str
    manifest: bytes
    files: dict[str, bytes]
    notes: str


def load_bundle(directory: Path) -> Bundle | None:
    """Read the bundled firmware (blocking); None if this install carries none."""
    try:
        manifest = (directory / "manifest.json").read_bytes()
        data = json.loads(manifest)
        files = {name: (directory / name).read_bytes() for name in data["files"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        LOGGER.info(
            "No node firmware bundled in %s (not a release zip): no firmware updates offered", directory
        )
        LOGGER.debug("Reading the bundle: %s", err)
        return None
    for name, digest in data["files"].items():
        if hashlib.sha256(files[name]).hexdigest() != digest:
            LOGGER.error("Bundled node firmware: %s does not match its manifest", name)
            return None
    notes_file = directory / "CHANGELOG.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    return Bundle(str(data["version"]), str(data.get("build", "")), manifest, files, notes)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the firmware manager uses of a node's `info`."""

    version: str
    build: str
    update: dict[str, Any]


def parse_info(payload: bytes | bytearray | str) -> NodeInfo | None:
    """Return a node's info, or None if the payload is not a JSON object with a version."""
    if len(payload) > MAX_INFO_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    version, build, update = data.get("version"), data.get("build"), data.get("update")
    if isinstance(version, bool) or not isinstance(version, (str, int, float)) or not str(version):
        return None
    return NodeInfo(
        str(version)[:MAX_VERSION],
        build[:MAX_VERSION] if isinstance(build, str) else "",
        update if isinstance(update, dict) else {},
    )


class NodeFirmware:
    """One node's firmware: its last info and, with its key, the install of the bundle."""

    def __init__(self, link: Link, base: str, node: str, key: str | None, bundle: Bundle | None) -> None:
        """Describe one node; without its key it cannot install."""
        self.node_id = node
        self.bundle = bundle
        self.info: NodeInfo | None = None
        self._link = link
        self._base = base
        self._key = key
        self._listeners: list[Callable[[], None]] = []
        self._replies: dict[str, asyncio.Queue[Reply]] = {}
        self._verdict: asyncio.Queue[NodeInfo] | None = None

    @property
    def can_install(self) -> bool:
        """Whether HA knows the node's key, which signs the commands."""
        return self._key is not None

    def _topic(self, leaf: str) -> str:
        return protocol.node_topic(self._base, self.node_id, leaf)

    @callback
    def add_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call `listener` on each new info; return the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def handle_info(self, info: NodeInfo) -> None:
        """Take the node's info: the installed version, and an install's verdict."""
        self.info = info
        if self._verdict is not None:
            self._verdict.put_nowait(info)
        for listener in list(self._listeners):
            listener()

    async def follow_replies(self) -> CALLBACK_TYPE:
        """Subscribe to the node's management replies; return once active, with the unsubscribe."""
        return await self._link.subscribe_node(self.node_id, protocol.NODE_MGMT_REPLY, self._on_reply)

    @callback
    def _on_reply(self, msg: mqtt.ReceiveMessage) -> None:
        reply = Reply.parse(payload_bytes(msg))
        if reply is not None and reply.nonce in self._replies:
            self._replies[reply.nonce].put_nowait(reply)

    async def command(self, cmd: str, arg: str = "", data: bytes | None = None) -> bytes:
        """Send a signed command (and a put's data in chunks); return the reply or raise.

        Reply chunks must arrive as `seq` 0, 1, 2, ... (docs/management.md): a chunk
        seen before (an MQTT redelivery) is dropped, a gap (a chunk lost) stops it.
        """
        assert self._key is not None  # installs are offered only with the key
        payload = protocol.sign_command(self._key, self.node_id, cmd, int(time.time()), arg)
        nonce = json.loads(payload)["nonce"]
        replies: asyncio.Queue[Reply] = asyncio.Queue()
        self._replies[nonce] = replies
        try:
            await self._link.publish(self._topic(protocol.NODE_MGMT_CMD), payload)
            for chunk in data_chunks(nonce, data) if data is not None else ():
                await self._link.publish(self._topic(protocol.NODE_MGMT_DATA), chunk)
            body = b""
            expected = 0
            while True:
                try:
                    async with asyncio.timeout(REPLY_TIMEOUT_S):
                        reply = await replies.get()
                except TimeoutError as err:
                    raise self._error("node_no_answer") from err
                if reply.seq < expected:
                    LOGGER.debug("Node %s: dropped reply chunk %d of %s again", self.node_id, reply.seq, cmd)
                    continue
                if reply.kind == "err":
                    raise self._error("node_refused", reason=reply.body.decode(errors="replace"))
                if reply.seq > expected:
                    raise self._error("node_reply_gap", seq=str(reply.seq), expected=str(expected))
                expected += 1
                body += reply.body
                if reply.kind == "ok":
                    return body
        finally:
            self._replies.pop(nonce, None)

    async def put(self, path: str, data: bytes) -> None:
        """Write a file on the node, checked there against its SHA-256."""
        await self.command("put", put_arg(path, data), data)

    async def install(self, progress: Callable[[int], None]) -> None:
        """Stage the bundle, install it and wait for the node's verdict; progress in %."""
        try:
            stop_replies = await self.follow_replies()
        except TimeoutError as err:
            raise self._error("node_no_answer") from err
        try:
            await self._install(progress)
        finally:
            stop_replies()

    async def _install(self, progress: Callable[[int], None]) -> None:
        bundle = self.bundle
        assert bundle is not None  # HA offers install only with a latest version
        total = sum(len(d) for d in bundle.files.values())
        done = 0
        for name, data in sorted(bundle.files.items()):
            await self.put(f"fw_new/{name}", data)
            done += len(data)
            progress(done * 90 // total)
        await self.put("fw_new/manifest.json", bundle.manifest)
        self._verdict = asyncio.Queue()  # infos from here on tell the verdict
        try:
            await self.command("update", hashlib.sha256(bundle.manifest).hexdigest())
            await self._await_verdict(bundle, self._verdict)
        finally:
            self._verdict = None

    async def _await_verdict(self, bundle: Bundle, infos: asyncio.Queue[NodeInfo]) -> None:
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                while True:
                    info = await infos.get()
                    end = verdict(info.update, info.build, bundle.version, bundle.build)
                    if end == ROLLED_BACK:
                        raise self._error("firmware_rolled_back", version=bundle.version)
                    if end == CONFIRMED:
                        return
        except TimeoutError as err:
            raise self._error("firmware_not_confirmed", version=bundle.version) from err

    def _error(self, key: str, **placeholders: str) -> HomeAssistantError:
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={"node": self.node_id, **placeholders},
        )


class FirmwareManager:
    """The firmware of one hub entry's nodes, known from their infos."""

    def __init__(
        self,
        link: Link,
        base: str,
        bundle: Bundle | None,
        keys: dict[str, str],
        on_new: Callable[[NodeFirmware], None],
    ) -> None:
        """Follow nodes under `base`; `keys` are the node keys HA knows (relay nodes)."""
        self.bundle = bundle
        self.nodes: dict[str, NodeFirmware] = {}
        self._link = link
        self._base = base
        self._keys = keys
        self._on_new = on_new
        self._refuse = WarnOnce()

    @callback
    def add(self, node: str) -> NodeFirmware:
        """Start following `node` (before its first info, for the nodes with a key)."""
        firmware = self.nodes[node] = NodeFirmware(
            self._link, self._base, node, self._keys.get(node), self.bundle
        )
        return firmware

    @callback
    def forget(self, firmware: NodeFirmware) -> None:
        """Drop a node (its entity was removed): its next info adds it again."""
        if self.nodes.get(firmware.node_id) is firmware:
            del self.nodes[firmware.node_id]

    async def start(self) -> CALLBACK_TYPE:
        """Subscribe to every node's info; return the unsubscribe."""
        return await self._link.subscribe_nodes(protocol.NODE_INFO, self._on_info)

    @callback
    def _on_info(self, node: str, msg: mqtt.ReceiveMessage) -> None:
        # the Link passes valid node ids only (its owner warns about the others)
        if not msg.payload:
            return  # the retained info was cleared
        info = parse_info(msg.payload)
        if info is None:
            self._refuse(
                node,
                "Ignored %s from %r: no firmware entity for it",
                "info that is not a JSON object with a version",
                node[:80],
            )
            return
        firmware = self.nodes.get(node)
        if firmware is None:
            firmware = self.add(node)
            firmware.handle_info(info)
            self._on_new(firmware)
        else:
            firmware.handle_info(info)
