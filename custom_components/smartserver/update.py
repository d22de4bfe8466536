"""Firmware update entities: one per node that runs this firmware (docs/management.md).

A node gets its entity the first time it publishes a valid retained `info` (installed
version and build); the relay nodes of configured servers get theirs at setup. The
latest version comes from the firmware bundled with the integration release
(`firmware/` next to this file, made by script/release). Install, offered only for
nodes whose key HA knows (relay nodes), stages the files over the management topics,
signed with the node's key, and waits until the node confirms the new firmware or
rolls it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeassistant.components import mqtt
from homeassistant.components.update import UpdateEntity, UpdateEntityFeature
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import protocol
from .const import DOMAIN, LOGGER
from .coordinator import SmartServerConfigEntry
from .entity import SmartServerEntity
from .helpers import node_device_link, node_identifier

PARALLEL_UPDATES = 1
BUNDLE_DIR = Path(__file__).parent / "firmware"
REPLY_TIMEOUT_S = 30
CONFIRM_TIMEOUT_S = 900
MAX_INFO_PAYLOAD = 4096
MAX_VERSION = 64
MAX_WARNED = 200


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
        LOGGER.debug("No bundled node firmware in %s: %s", directory, err)
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
    """What the update entity uses of a node's `info`."""

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


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add an entity per relay node now and one per node when it first publishes info."""
    bundle = await hass.async_add_executor_job(load_bundle, BUNDLE_DIR)
    base = entry.runtime_data.base_topic
    hub = entry.runtime_data.servers
    assert hub is not None
    # Install needs the node's key: HA knows those of its servers' relay nodes.
    keys: dict[str, str] = {}
    for server in hub.servers.values():
        keys.setdefault(server.config.relay_node, server.config.node_key)
    entities: dict[str, NodeFirmwareEntity] = {}
    warned: set[str] = set()

    @callback
    def forget(entity: NodeFirmwareEntity) -> None:
        # Removed with its device: the node's next info adds it again.
        if entities.get(entity.node_id) is entity:
            del entities[entity.node_id]

    @callback
    def create(node: str) -> NodeFirmwareEntity:
        # On the node's device, which belongs to the hub entry (created here if new).
        node_device_link(hass, entry.entry_id, node)
        entity = entities[node] = NodeFirmwareEntity(base, node, keys.get(node), bundle, forget)
        return entity

    @callback
    def refuse(node: str, what: str) -> None:
        if node not in warned and len(warned) < MAX_WARNED:
            warned.add(node)
            LOGGER.warning("Ignored %s from %r: no firmware entity for it", what, node[:80])

    @callback
    def on_info(msg: mqtt.ReceiveMessage) -> None:
        node = protocol.parse_node_topic(base, msg.topic, protocol.NODE_INFO)
        if node is None:
            return
        if not protocol.valid_id(node):
            refuse(node, "info (not a valid node id: [A-Za-z0-9_-]{1,64})")
            return
        if not msg.payload:
            return  # the retained info was cleared
        info = parse_info(msg.payload)
        if info is None:
            refuse(node, "info that is not a JSON object with a version")
            return
        entity = entities.get(node)
        if entity is None:
            async_add_entities([entity := create(node)])
        entity.handle_info(info)

    async_add_entities([create(node) for node in keys])
    entry.async_on_unload(
        await mqtt.async_subscribe(
            hass, protocol.node_filter(base, protocol.NODE_INFO), on_info, qos=1, encoding=None
        )
    )


class NodeFirmwareEntity(SmartServerEntity, UpdateEntity):
    """A node's firmware: installed, bundled, and (with the node's key) the install."""

    _attr_translation_key = "firmware"

    def __init__(
        self,
        base: str,
        node: str,
        key: str | None,
        bundle: Bundle | None,
        forget: Callable[[NodeFirmwareEntity], None],
    ) -> None:
        """Describe the entity of one node; without its key it offers no install."""
        self._base = base
        self.node_id = node
        self._key = key
        self._bundle = bundle
        self._forget = forget
        self._attr_unique_id = f"node_{node}_firmware"
        # Identifiers only: a name here would overwrite the one from device_names.yaml.
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node)})
        self._attr_supported_features = UpdateEntityFeature.RELEASE_NOTES
        if key is not None:
            self._attr_supported_features |= UpdateEntityFeature.INSTALL | UpdateEntityFeature.PROGRESS
        self._attr_latest_version = bundle.version if bundle else None
        self._other_build = False
        self._added = False
        self._replies: dict[str, asyncio.Queue[tuple[int, str, bytes]]] = {}
        self._info: asyncio.Queue[NodeInfo] | None = None

    def _topic(self, leaf: str) -> str:
        return protocol.node_topic(self._base, self.node_id, leaf)

    async def async_added_to_hass(self) -> None:
        """Follow the node's management replies (only needed to install)."""
        await super().async_added_to_hass()
        self._added = True
        if self._key is not None:
            self.async_on_remove(
                await mqtt.async_subscribe(
                    self.hass, self._topic(protocol.NODE_MGMT_REPLY), self._on_reply, qos=1, encoding=None
                )
            )

    async def async_will_remove_from_hass(self) -> None:
        """Let the platform add the entity again when the node's info comes back."""
        self._added = False
        self._forget(self)

    @callback
    def handle_info(self, info: NodeInfo) -> None:
        """Take the installed version and build from the node's info."""
        bundle = self._bundle
        # Same version, another build (both known): the bundled one is an update.
        self._other_build = bool(
            bundle
            and info.version == bundle.version
            and info.build
            and bundle.build
            and info.build != bundle.build
        )
        if self._other_build:
            assert bundle is not None
            self._attr_installed_version = f"{info.version}+{info.build}"
            self._attr_latest_version = f"{bundle.version}+{bundle.build}"
        else:
            self._attr_installed_version = info.version
            self._attr_latest_version = bundle.version if bundle else None
        if self._info is not None:
            self._info.put_nowait(info)
        if self._added:
            self.async_write_ha_state()

    def version_is_newer(self, latest_version: str, installed_version: str) -> bool:
        """Return True for the bundled build of the installed version, else compare."""
        return self._other_build or super().version_is_newer(latest_version, installed_version)

    @callback
    def _on_reply(self, msg: mqtt.ReceiveMessage) -> None:
        payload = msg.payload.encode() if isinstance(msg.payload, str) else bytes(msg.payload)
        head, sep, body = payload.partition(b"\n")
        parts = head.decode(errors="replace").split(" ")
        if not sep or len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("more", "ok", "err"):
            return
        if parts[0] in self._replies:
            self._replies[parts[0]].put_nowait((int(parts[1]), parts[2], body))

    async def async_release_notes(self) -> str | None:
        """Return the bundled firmware's release notes."""
        return self._bundle.notes if self._bundle else None

    async def _command(self, cmd: str, arg: str = "", chunks: list[bytes] | None = None) -> bytes:
        """Send a signed command (and a put's chunks); return the reply or raise.

        Reply chunks must arrive as `seq` 0, 1, 2, ... (docs/management.md): a chunk
        seen before (an MQTT redelivery) is dropped, a gap (a chunk lost) stops it.
        """
        assert self._key is not None  # install is offered only with the key
        payload = protocol.sign_command(self._key, self.node_id, cmd, int(time.time()), arg)
        nonce = json.loads(payload)["nonce"]
        replies: asyncio.Queue[tuple[int, str, bytes]] = asyncio.Queue()
        self._replies[nonce] = replies
        try:
            await mqtt.async_publish(self.hass, self._topic(protocol.NODE_MGMT_CMD), payload, qos=1)
            for seq, piece in enumerate(chunks or ()):
                kind = "ok" if seq == len(chunks or ()) - 1 else "more"
                data = f"{nonce} {seq} {kind}\n".encode() + piece
                await mqtt.async_publish(self.hass, self._topic(protocol.NODE_MGMT_DATA), data, qos=1)
            body = b""
            expected = 0
            while True:
                try:
                    async with asyncio.timeout(REPLY_TIMEOUT_S):
                        seq, kind, part = await replies.get()
                except TimeoutError as err:
                    raise self._error("node_no_answer") from err
                if seq < expected:
                    LOGGER.debug("Node %s: dropped reply chunk %d of %s again", self.node_id, seq, cmd)
                    continue
                if kind == "err":
                    raise self._error("node_refused", reason=part.decode(errors="replace"))
                if seq > expected:
                    raise self._error("node_reply_gap", seq=str(seq), expected=str(expected))
                expected += 1
                body += part
                if kind == "ok":
                    return body
        finally:
            self._replies.pop(nonce, None)

    async def _put(self, path: str, data: bytes) -> None:
        step = protocol.MGMT_CHUNK
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        digest = hashlib.sha256(data).hexdigest()
        await self._command("put", f"{path}\n{digest}\n{len(data)}", chunks)

    def _error(self, key: str, **placeholders: str) -> HomeAssistantError:
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={"node": self.node_id, **placeholders},
        )

    async def async_install(self, version: str | None, backup: bool, **kwargs: Any) -> None:
        """Stage the bundled firmware, install it and wait for the node's verdict."""
        bundle = self._bundle
        assert bundle is not None  # HA offers install only with a latest version
        total = sum(len(d) for d in bundle.files.values())
        done = 0
        self._attr_in_progress = True
        self._attr_update_percentage = 0
        self.async_write_ha_state()
        try:
            for name, data in sorted(bundle.files.items()):
                await self._put(f"fw_new/{name}", data)
                done += len(data)
                self._attr_update_percentage = done * 90 // total
                self.async_write_ha_state()
            await self._put("fw_new/manifest.json", bundle.manifest)
            self._info = asyncio.Queue()  # infos from here on tell the verdict
            await self._command("update", hashlib.sha256(bundle.manifest).hexdigest())
            await self._await_verdict(bundle)
        finally:
            self._info = None
            self._attr_in_progress = False
            self._attr_update_percentage = None
            self.async_write_ha_state()

    async def _await_verdict(self, bundle: Bundle) -> None:
        assert self._info is not None
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                while True:
                    info = await self._info.get()
                    if info.update.get("version") != bundle.version:
                        continue
                    if info.update.get("result") == "rolled back":
                        raise self._error("firmware_rolled_back", version=bundle.version)
                    # Confirmed counts for this build only: the same version may be installed.
                    if info.update.get("result") == "confirmed" and info.build == bundle.build:
                        return
        except TimeoutError as err:
            raise self._error("firmware_not_confirmed", version=bundle.version) from err
