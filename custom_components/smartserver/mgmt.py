"""The firmware manager: nodes' infos, the bundled firmware, and installs over management.

One `FirmwareManager` per hub entry follows every node's retained `info` and keeps a
`NodeFirmware` per node: its installed versions, and (with the node's key) the install
of the bundled firmware or of a MicroPython image over the management topics
(docs/management.md): signed commands, chunked data, ordered reply chunks, then the
node's verdict on its `info`. One install at a time per node.
It reaches MQTT only through a `Link`, so whoever owns the entry's subscriptions
decides how they are made. The framing itself is in mgmt_framing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.exceptions import HomeAssistantError

from . import protocol
from .app_image import Image, ImageError
from .const import DOMAIN, LOGGER
from .helpers import WarnOnce, payload_bytes
from .mgmt_framing import (
    CHUNK,
    ROLLED_BACK,
    Reply,
    data_chunks,
    image_arg,
    image_verdict,
    put_arg,
    verdict,
)

BUNDLE_DIR = Path(__file__).parent / "firmware"
REPLY_TIMEOUT_S = 30
# The node writes an image to flash while its chunks queue at the broker: it may answer
# the last chunk long after HA sent it.
IMAGE_REPLY_TIMEOUT_S = 120
# An image goes out at most this far ahead of the node's last "written" report (every
# 64 KB): the broker queues what the node has not taken yet and drops what exceeds its
# queue (mosquitto's max_queued_messages, 1000 messages by default).
IMAGE_WINDOW = 128 * 1024
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
    micropython: str = ""  # the running MicroPython's version
    image: dict[str, Any] = field(default_factory=dict)  # the last image install


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
    micropython, image = data.get("micropython"), data.get("image")
    return NodeInfo(
        str(version)[:MAX_VERSION],
        build[:MAX_VERSION] if isinstance(build, str) else "",
        update if isinstance(update, dict) else {},
        micropython[:MAX_VERSION] if isinstance(micropython, str) else "",
        image if isinstance(image, dict) else {},
    )


class _Replies:
    """One command's reply chunks, taken in `seq` order (docs/management.md).

    A chunk seen before (an MQTT redelivery) is dropped, a gap (a chunk lost) stops it.
    The errors name the firmware update, or with `image` the MicroPython update.
    """

    def __init__(self, firmware: NodeFirmware, cmd: str, image: bool) -> None:
        self.queue: asyncio.Queue[Reply] = asyncio.Queue()
        self.done = False
        self._firmware = firmware
        self._cmd = cmd
        self._image = image
        self._expected = 0
        self._body = b""
        self.written = 0  # what an image's node reported written so far

    async def next(self, wait_s: float) -> None:
        """Wait for the next chunk (within `wait_s`) and take it."""
        try:
            async with asyncio.timeout(wait_s):
                reply = await self.queue.get()
        except TimeoutError as err:
            raise self._firmware.no_answer(self._image) from err
        self._take(reply)

    def take_waiting(self) -> None:
        """Take the chunks already here: a refusal stops a transfer at once."""
        while not self.done and not self.queue.empty():
            self._take(self.queue.get_nowait())

    async def body(self, wait_s: float) -> bytes:
        """Wait for the last chunk (each within `wait_s`); return the reply's body or raise."""
        while not self.done:
            await self.next(wait_s)
        return self._body

    def _take(self, reply: Reply) -> None:
        if reply.seq < self._expected:
            LOGGER.debug(
                "Node %s: dropped reply chunk %d of %s again", self._firmware.node_id, reply.seq, self._cmd
            )
            return
        error = self._firmware._error  # the reply side of NodeFirmware
        if reply.kind == "err":
            reason = reply.body.decode(errors="replace")
            if self._image:
                raise error("micropython_refused", reason=reason)
            raise error("node_refused", reason=reason)
        if reply.seq > self._expected:
            seq, expected = str(reply.seq), str(self._expected)
            if self._image:
                raise error("micropython_reply_gap", seq=seq, expected=expected)
            raise error("node_reply_gap", seq=seq, expected=expected)
        self._expected += 1
        if self._image and reply.kind == "more":  # progress: "written <bytes>"
            with contextlib.suppress(ValueError):
                self.written = int(reply.body.split()[-1])
            return
        self._body += reply.body
        self.done = reply.kind == "ok"


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
        self._installing: bool | None = None  # an install runs: True for an image
        # the entity kinds update.py made for this node (added again when they are removed)
        self.shown: set[str] = set()

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

    async def command(
        self,
        cmd: str,
        arg: str = "",
        data: bytes | None = None,
        *,
        sent: Callable[[int], None] | None = None,
        image: bool = False,
        wait_s: float | None = None,
        window: int = 0,
    ) -> bytes:
        """Send a signed command (and its data in chunks); return the reply or raise.

        `sent` gets the data bytes sent so far after each chunk; a refusal that arrives
        while the data goes out stops it. Each reply chunk must come within `wait_s`
        (REPLY_TIMEOUT_S if None). With `image` the errors name the MicroPython update,
        and with a `window` the data goes out at most that far ahead of what the node
        reported written.
        """
        assert self._key is not None  # installs are offered only with the key
        payload = protocol.sign_command(self._key, self.node_id, cmd, int(time.time()), arg)
        nonce = json.loads(payload)["nonce"]
        replies = _Replies(self, cmd, image)
        self._replies[nonce] = replies.queue
        wait_s = REPLY_TIMEOUT_S if wait_s is None else wait_s
        try:
            await self._link.publish(self._topic(protocol.NODE_MGMT_CMD), payload)
            done = 0
            for chunk in data_chunks(nonce, data) if data is not None else ():
                replies.take_waiting()
                while window and done - replies.written >= window and not replies.done:
                    await replies.next(wait_s)
                if replies.done:
                    break  # the node ended it early: its reply says why
                await self._link.publish(self._topic(protocol.NODE_MGMT_DATA), chunk)
                if sent is not None and data is not None:
                    done = min(done + CHUNK, len(data))
                    sent(done)
            return await replies.body(wait_s)
        finally:
            self._replies.pop(nonce, None)

    async def put(self, path: str, data: bytes) -> None:
        """Write a file on the node, checked there against its SHA-256."""
        await self.command("put", put_arg(path, data), data)

    @contextmanager
    def _only(self, image: bool) -> Iterator[None]:
        """One install at a time on a node: the other is refused, not queued."""
        if self._installing is True:
            raise self._error("micropython_update_running")
        if self._installing is False:
            raise self._error("firmware_update_running")
        self._installing = image
        try:
            yield
        finally:
            self._installing = None

    async def _with_replies(self, image: bool, install: Callable[[], Awaitable[None]]) -> None:
        try:
            stop_replies = await self.follow_replies()
        except TimeoutError as err:
            raise self.no_answer(image) from err
        try:
            await install()
        finally:
            stop_replies()

    async def install(self, progress: Callable[[int], None]) -> None:
        """Stage the bundle, install it and wait for the node's verdict; progress in %."""
        with self._only(image=False):
            await self._with_replies(False, lambda: self._install(progress))

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
            end = await self._await_verdict(
                lambda info: verdict(info.update, info.build, bundle.version, bundle.build)
            )
        finally:
            self._verdict = None
        if end == ROLLED_BACK:
            raise self._error("firmware_rolled_back", version=bundle.version)
        if end is None:
            raise self._error("firmware_not_confirmed", version=bundle.version)

    async def install_image(
        self, image: Image, read: Callable[[], Awaitable[bytes]], progress: Callable[[int], None]
    ) -> None:
        """Send a MicroPython image and wait for the node's verdict; progress in % (90 once sent).

        `read` returns the image's bytes (off the event loop) or raises ImageError.
        """
        with self._only(image=True):
            try:
                data = await read()
            except ImageError as err:
                raise self._error(
                    "micropython_image_unreadable", path=image.path.name, reason=str(err)
                ) from err
            await self._with_replies(True, lambda: self._install_image(image, data, progress))

    async def _install_image(self, image: Image, data: bytes, progress: Callable[[int], None]) -> None:
        shown = 0

        def sent(done: int) -> None:
            nonlocal shown
            if (percent := done * 90 // len(data)) != shown:
                shown = percent
                progress(percent)

        self._verdict = asyncio.Queue()  # infos from here on tell the verdict
        try:
            written = await self.command(
                "image",
                image_arg(data, image.version),
                data,
                sent=sent,
                image=True,
                wait_s=IMAGE_REPLY_TIMEOUT_S,
                window=IMAGE_WINDOW,
            )
            if written.decode(errors="replace") != image.sha256:
                raise self._error("micropython_refused", reason=f"wrote an image with SHA-256 {written!r}")
            end = await self._await_verdict(lambda info: image_verdict(info.image, image.sha256))
        finally:
            self._verdict = None
        if end == ROLLED_BACK:
            raise self._error("micropython_rolled_back", version=image.version)
        if end is None:
            raise self._error("micropython_not_confirmed", version=image.version)

    async def _await_verdict(self, end: Callable[[NodeInfo], str | None]) -> str | None:
        """Return `end` of the first info it is not None for (CONFIRMED, ROLLED_BACK).

        None if no info tells within CONFIRM_TIMEOUT_S.
        """
        infos = self._verdict
        assert infos is not None
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                while True:
                    if (result := end(await infos.get())) is not None:
                        return result
        except TimeoutError:
            return None

    def no_answer(self, image: bool) -> HomeAssistantError:
        """Return the error for a node that did not answer an install's command."""
        if image:
            return self._error("micropython_no_answer")
        return self._error("node_no_answer")

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
        on_info: Callable[[NodeFirmware], None],
    ) -> None:
        """Follow nodes under `base`; `keys` are the node keys HA knows (relay nodes).

        `on_info` gets a node after each valid info (update.py adds the entities it lacks).
        """
        self.bundle = bundle
        self.nodes: dict[str, NodeFirmware] = {}
        self._link = link
        self._base = base
        self._keys = keys
        self._on_node_info = on_info
        self._refuse = WarnOnce()

    @callback
    def add(self, node: str) -> NodeFirmware:
        """Start following `node` (before its first info, for the nodes with a key)."""
        firmware = self.nodes[node] = NodeFirmware(
            self._link, self._base, node, self._keys.get(node), self.bundle
        )
        return firmware

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
        firmware = self.nodes.get(node) or self.add(node)
        firmware.handle_info(info)
        self._on_node_info(firmware)
