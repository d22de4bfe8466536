"""Helpers for the update entity tests on the mocked MQTT client: a bundled firmware,
MicroPython images, node infos, a scripted node that answers management commands, and the
fixtures `setup` and `node` (a test module provides `bundle_dir` and `fake_node`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.components import mqtt
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant, callback
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import protocol
from script.harness import esp_image
from script.harness.ha import NODE_KEY, RELAY_NODE

RELAY = f"update.{RELAY_NODE}_firmware"
NODE2 = "node2"
OTHER = f"update.{NODE2}_firmware"
VERSION = "0.2.0"
FILES = {"node.mpy": b"N" * 3000, "mgmt.mpy": b"M" * 100}


def build_hash(files: dict[str, bytes]) -> str:
    """The build hash of smartserver-node and script/deploy-firmware."""
    lines = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


BUILD = build_hash(FILES)


def make_bundle(directory: Path, version: str = VERSION, build: str = BUILD) -> Path:
    """The integration's firmware/ folder as script/release writes it."""
    directory.mkdir()
    for name, data in FILES.items():
        (directory / name).write_bytes(data)
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in sorted(FILES.items())}
    manifest = {"version": version, "build": build, "files": digests}
    (directory / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    (directory / "CHANGELOG.md").write_text(f"## {version}\n\n- test release\n")
    return directory


def info(
    version: str = "0.1.0",
    build: str | None = "0123456789ab",
    update: Any = None,
    *,
    micropython: str | None = None,
    image: dict[str, str] | None = None,
) -> str:
    """A node's info as firmware/esp32/node.py publishes it (the fields used here)."""
    data: dict[str, Any] = {"version": version, "update": update, "uptime_s": 12}
    if build is not None:
        data["build"] = build
    if micropython is not None:
        data["micropython"] = micropython
    if image is not None:
        data["image"] = image
    return json.dumps(data)


def publish_info(hass: HomeAssistant, node: str, payload: str | bytes, retain: bool = False) -> None:
    """The node's info; the broker marks it retained only when it delivers the stored copy."""
    async_fire_mqtt_message(hass, f"home/node/{node}/info", payload, qos=1, retain=retain)


def progress_of(hass: HomeAssistant, entity_id: str) -> list[int | None]:
    """Collect the entity's update_percentage, in order, from here on."""
    seen: list[int | None] = []
    hass.bus.async_listen(
        "state_changed",
        callback(
            lambda event: (
                seen.append(event.data["new_state"].attributes.get("update_percentage"))
                if event.data["entity_id"] == entity_id
                else None
            )
        ),
    )
    return seen


def versions(hass: HomeAssistant, entity_id: str) -> tuple[str, str | None, str | None]:
    """State, installed and latest version of an update entity."""
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state, state.attributes["installed_version"], state.attributes["latest_version"]


async def install(hass: HomeAssistant, entity_id: str = RELAY) -> None:
    """Press install on an update entity, waiting until it ends."""
    await hass.services.async_call("update", "install", {ATTR_ENTITY_ID: entity_id}, blocking=True)


@asynccontextmanager
async def running_hub(
    hass: HomeAssistant, entry: MockConfigEntry, bundle: Path
) -> AsyncGenerator[MockConfigEntry]:
    """The hub with only the update platform, carrying `bundle` as the bundled firmware
    (also through reloads), unloaded at the end."""
    entry.add_to_hass(hass)
    with (
        patch("custom_components.smartserver.mgmt.BUNDLE_DIR", bundle),
        patch("custom_components.smartserver.PLATFORMS", [Platform.UPDATE]),
    ):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        yield entry
        await hass.async_block_till_done()  # an options flow may have left a reload running
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


Reply = tuple[int, str, bytes]
PROGRESS = 64 * 1024  # the firmware's "written" report interval (firmware/esp32/image.py)


@dataclass
class FakeNode:
    """relay1's management side: checks the signatures, stores puts, replies as scripted.

    `script` maps a command to the reply chunks it gets instead of a plain `ok`; a
    script that starts with `err` answers a put or image command before its data, as a
    node refuses a command it will not take. After `update` the node publishes the infos
    in `after_update`, after `image` those in `after_image`. Like the firmware, it
    reports `written <bytes>` every 64 KB of an image (unless `progress` is off); the
    scripted chunks' seqs count after those. The `node` fixture publishes `running` first.
    """

    hass: HomeAssistant
    node: str = RELAY_NODE
    running: str = field(default_factory=info)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    after_update: list[str] = field(default_factory=list)
    after_image: list[str] = field(default_factory=list)
    commands: list[protocol.Command] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    image: bytes | None = None
    data_chunks: int = 0
    progress: bool = True
    commanded: asyncio.Event = field(default_factory=asyncio.Event)  # a command arrived
    _seen: dict[str, float] = field(default_factory=dict)
    _puts: dict[str, tuple[str, bytearray]] = field(default_factory=dict)
    _reported: dict[str, int] = field(default_factory=dict)  # progress chunks per nonce

    async def start(self) -> Callable[[], None]:
        return await mqtt.async_subscribe(
            self.hass, f"home/node/{self.node}/mgmt/+", self._on_message, qos=1, encoding=None
        )

    @callback
    def _on_message(self, msg: mqtt.ReceiveMessage) -> None:
        assert isinstance(msg.payload, bytes)
        if msg.topic.endswith("/cmd"):
            command = protocol.verify_command(NODE_KEY, self.node, msg.payload, time.time(), self._seen)
            self.commands.append(command)
            self.commanded.set()
            refused = self.script.get(command.cmd, [(0, "ok", b"")])[0][1] == "err"
            if command.cmd in ("put", "image") and not refused:
                self._puts[command.nonce] = (command.arg.split("\n")[0], bytearray())
            else:
                self._answer(command, b"")
        elif msg.topic.endswith("/data"):
            self.data_chunks += 1
            head, _, body = msg.payload.partition(b"\n")
            nonce, _seq, kind = head.decode().split(" ")
            if nonce not in self._puts:
                return  # refused: the node drops the data
            path, data = self._puts[nonce]
            before = len(data)
            data += body
            command = next(c for c in self.commands if c.nonce == nonce)
            if self.progress and command.cmd == "image" and len(data) // PROGRESS > before // PROGRESS:
                seq = self._reported[nonce] = self._reported.get(nonce, 0) + 1
                self._send(nonce, seq - 1, "more", f"written {len(data) // PROGRESS * PROGRESS}".encode())
            if kind == "ok":
                if command.cmd == "image":
                    self.image = bytes(data)
                else:
                    self.files[path] = bytes(data)
                self._answer(command, hashlib.sha256(data).hexdigest().encode())

    def _answer(self, command: protocol.Command, body: bytes) -> None:
        chunks = self.script.get(command.cmd, [(0, "ok", body)])
        reported = self._reported.get(command.nonce, 0)
        for seq, kind, part in chunks:
            self._send(command.nonce, reported + seq, kind, part)
        after = {"update": self.after_update, "image": self.after_image}.get(command.cmd, [])
        if chunks and chunks[-1][1] == "ok":
            for text in after:
                self.hass.loop.call_soon(publish_info, self.hass, self.node, text)

    def _send(self, nonce: str, seq: int, kind: str, body: bytes) -> None:
        payload = f"{nonce} {seq} {kind}\n".encode() + body
        self.hass.loop.call_soon(
            async_fire_mqtt_message, self.hass, f"home/node/{self.node}/mgmt/reply", payload, 1
        )


def app_image(version: str = "v1.25.0", project: bytes = b"micropython", size: int = 200_000) -> bytes:
    """A valid ESP32 app image as esptool writes it (script/harness/esp_image.py)."""
    return esp_image.build(version, size, project=project.decode())


@pytest.fixture
async def setup(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    bundle_dir: Path,
) -> AsyncGenerator[MockConfigEntry]:
    """The hub with relay1's server and only the update platform, carrying the module's bundle."""
    async with running_hub(hass, server_config_entry, bundle_dir) as entry:
        yield entry


@pytest.fixture
async def node(hass: HomeAssistant, setup: MockConfigEntry, fake_node: FakeNode) -> AsyncGenerator[FakeNode]:
    """The module's fake relay1, answering management commands, after its first info."""
    unsubscribe = await fake_node.start()
    publish_info(hass, fake_node.node, fake_node.running)
    await hass.async_block_till_done()
    yield fake_node
    unsubscribe()
