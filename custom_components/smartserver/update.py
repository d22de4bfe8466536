"""Firmware update entities: one per relay node whose key HA knows (docs/management.md).

The installed version comes from the node's retained info topic; the latest one from
the firmware bundled with the integration release (`firmware/` next to this file, made
by script/release). Install stages the files over the management topics, signed with
the node's key, and waits until the node confirms the new firmware or rolls it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
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


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add an update entity for each server's relay node (their keys are known)."""
    bundle = await hass.async_add_executor_job(load_bundle, BUNDLE_DIR)
    hub = entry.runtime_data.servers
    assert hub is not None
    # On the node's device, which belongs to the hub entry (created here if new).
    keys: dict[str, str] = {}
    for server in hub.servers.values():
        keys.setdefault(server.config.relay_node, server.config.node_key)
    for node in keys:
        node_device_link(hass, entry.entry_id, node)
    async_add_entities(
        NodeFirmwareEntity(entry.runtime_data.base_topic, node, key, bundle) for node, key in keys.items()
    )


class NodeFirmwareEntity(SmartServerEntity, UpdateEntity):
    """A node's firmware: installed, bundled, and the install over MQTT."""

    _attr_translation_key = "firmware"
    _attr_supported_features = (
        UpdateEntityFeature.INSTALL | UpdateEntityFeature.PROGRESS | UpdateEntityFeature.RELEASE_NOTES
    )

    def __init__(self, base: str, node: str, key: str, bundle: Bundle | None) -> None:
        """Describe the entity of one node."""
        self._base = base
        self._node = node
        self._key = key
        self._bundle = bundle
        self._attr_unique_id = f"node_{node}_firmware"
        # Identifiers only: a name here would overwrite the one from device_names.yaml.
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node)})
        self._attr_latest_version = bundle.version if bundle else None
        self._replies: dict[str, asyncio.Queue[tuple[int, str, bytes]]] = {}
        self._info: asyncio.Queue[dict[str, Any]] | None = None

    def _topic(self, leaf: str) -> str:
        return protocol.node_topic(self._base, self._node, leaf)

    async def async_added_to_hass(self) -> None:
        """Follow the node's info and management replies."""
        await super().async_added_to_hass()
        self.async_on_remove(
            await mqtt.async_subscribe(self.hass, self._topic(protocol.NODE_INFO), self._on_info, qos=1)
        )
        self.async_on_remove(
            await mqtt.async_subscribe(
                self.hass, self._topic(protocol.NODE_MGMT_REPLY), self._on_reply, qos=1, encoding=None
            )
        )

    @callback
    def _on_info(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            info = json.loads(msg.payload)
            version = info["version"]
        except ValueError, KeyError, TypeError:
            LOGGER.warning("Node %s: info is not valid JSON with a version", self._node)
            return
        self._attr_installed_version = str(version)
        if self._info is not None:
            self._info.put_nowait(info)
        self.async_write_ha_state()

    @callback
    def _on_reply(self, msg: mqtt.ReceiveMessage) -> None:
        payload = msg.payload.encode() if isinstance(msg.payload, str) else bytes(msg.payload)
        head, _, body = payload.partition(b"\n")
        parts = head.decode(errors="replace").split(" ")
        if len(parts) == 3 and parts[1].isdigit() and parts[0] in self._replies:
            self._replies[parts[0]].put_nowait((int(parts[1]), parts[2], body))

    async def async_release_notes(self) -> str | None:
        """Return the bundled firmware's release notes."""
        return self._bundle.notes if self._bundle else None

    async def _command(self, cmd: str, arg: str = "", chunks: list[bytes] | None = None) -> bytes:
        """Send a signed command (and a put's chunks); return the reply or raise."""
        payload = protocol.sign_command(self._key, self._node, cmd, int(time.time()), arg)
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
            while True:
                try:
                    async with asyncio.timeout(REPLY_TIMEOUT_S):
                        _seq, kind, part = await replies.get()
                except TimeoutError as err:
                    raise self._error("node_no_answer") from err
                if kind == "err":
                    raise self._error("node_refused", reason=part.decode(errors="replace"))
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
            translation_placeholders={"node": self._node, **placeholders},
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
        self._info = asyncio.Queue()
        try:
            for name, data in sorted(bundle.files.items()):
                await self._put(f"fw_new/{name}", data)
                done += len(data)
                self._attr_update_percentage = done * 90 // total
                self.async_write_ha_state()
            await self._put("fw_new/manifest.json", bundle.manifest)
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
                    result = info.get("update") or {}
                    if not isinstance(result, dict) or result.get("version") != bundle.version:
                        continue
                    if result.get("result") == "rolled back":
                        raise self._error("firmware_rolled_back", version=bundle.version)
                    if result.get("result") == "confirmed":
                        return
        except TimeoutError as err:
            raise self._error("firmware_not_confirmed", version=bundle.version) from err
