"""The MicroPython update entities on the mocked MQTT client: offered when an image is
configured (bundled or named in the options), versions from the node's info, and the
install of the image against a scripted node (refused, rolled back, timed out, busy)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.components.update import UpdateEntityFeature
from homeassistant.const import ATTR_SUPPORTED_FEATURES
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.smartserver.const import (
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_MICROPYTHON_IMAGE,
    CONF_RATE_LIMIT,
    CONF_STORAGE,
    DOMAIN,
)
from custom_components.smartserver.helpers import node_identifier
from custom_components.smartserver.mgmt_framing import CHUNK, app_version, image_arg
from script.harness.ha import RELAY_NODE

from . import update_common
from .nodes_common import write
from .update_common import (
    BUILD,
    NODE2,
    RELAY,
    VERSION,
    FakeNode,
    app_image,
    info,
    install,
    make_bundle,
    progress_of,
    publish_info,
    running_hub,
    versions,
)

MICROPYTHON = f"update.{RELAY_NODE}_micropython"
OTHER = f"update.{NODE2}_micropython"
IMAGE = app_image("v1.25.0")
SHA = hashlib.sha256(IMAGE).hexdigest()
RUNNING = "1.24.1"


def image_info(sha: str = SHA, result: str = "confirmed", micropython: str = "1.25.0") -> str:
    """relay1's info after an image install: the new MicroPython and the install's end."""
    return info(
        VERSION, BUILD, micropython=micropython, image={"sha256": sha, "version": "1.25.0", "result": result}
    )


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """The release's firmware/ with a MicroPython 1.25.0 image (script/release --image)."""
    bundle = make_bundle(tmp_path / "firmware")
    (bundle / "micropython.app-bin").write_bytes(IMAGE)
    return bundle


@pytest.fixture
def fake_node(hass: HomeAssistant) -> FakeNode:
    """relay1 on MicroPython 1.24.1, confirming the image it gets."""
    return FakeNode(
        hass,
        running=info(VERSION, BUILD, micropython=RUNNING),
        after_image=[image_info(result="trial"), image_info()],
    )


# the shared fixtures: pytest finds them as this module's attributes
setup = update_common.setup
node = update_common.node


# The image's version -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (app_image("v1.25.0"), "1.25.0"),
        (app_image("v1.26.0-preview.55.g1234abcd"), "1.26.0-preview.55.g1234abcd"),
        (app_image("1.25.0"), "1.25.0"),
        (app_image("v" + "9" * 31), "9" * 31),
        (app_image(""), None),
        (app_image("v1.25\x01"), None),
        (app_image("v1.25é"), None),
        (b"\xe9" + app_image()[1:40], None),  # cut inside the descriptor
        (b"\x00" + app_image()[1:], None),  # not an image's magic byte
        (app_image()[:32] + b"\x00" + app_image()[33:], None),  # not the descriptor's magic
        (b"PK\x03\x04" + bytes(300), None),  # a zip, for example the full download
    ],
    ids=[
        "release",
        "preview",
        "no-v",
        "longest",
        "empty",
        "control",
        "non-ascii",
        "short",
        "magic",
        "desc",
        "zip",
    ],
)
def test_app_version_reads_the_app_descriptor(data: bytes, expected: str | None) -> None:
    assert app_version(data) == expected


# Offered or not ----------------------------------------------------------------------


async def test_entities(
    hass: HomeAssistant,
    setup: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """relay1 (install) and node2 (no key): firmware and MicroPython, with the bundled image."""
    publish_info(hass, RELAY_NODE, info(micropython=RUNNING))
    publish_info(hass, NODE2, info(VERSION, BUILD, micropython="1.25.0"))
    await hass.async_block_till_done()
    await snapshot_platform(hass, entity_registry, snapshot, setup.entry_id)


async def test_offered_for_a_node_reporting_micropython(
    hass: HomeAssistant, node: FakeNode, entity_registry: er.EntityRegistry
) -> None:
    assert versions(hass, MICROPYTHON) == ("on", RUNNING, "1.25.0")
    state = hass.states.get(MICROPYTHON)
    assert state is not None
    assert (
        state.attributes[ATTR_SUPPORTED_FEATURES]
        == UpdateEntityFeature.INSTALL | UpdateEntityFeature.PROGRESS
    )
    assert state.attributes["friendly_name"] == f"{RELAY_NODE} MicroPython"
    entry = entity_registry.async_get(MICROPYTHON)
    assert entry is not None
    assert entry.unique_id == f"node_{RELAY_NODE}_micropython"
    assert entry.translation_key == "micropython"
    # a node whose key HA lacks shows its versions, without install
    publish_info(hass, NODE2, info(micropython="1.25.0"))
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("off", "1.25.0", "1.25.0")
    assert hass.states.get(OTHER).attributes[ATTR_SUPPORTED_FEATURES] == 0  # type: ignore[union-attr]


async def test_no_entity_for_a_node_without_micropython_in_its_info(
    hass: HomeAssistant, setup: MockConfigEntry
) -> None:
    """An older firmware reports no MicroPython version: its firmware entity only."""
    publish_info(hass, NODE2, info())
    publish_info(hass, RELAY_NODE, info(micropython=""))
    await hass.async_block_till_done()
    assert sorted(hass.states.async_entity_ids("update")) == [f"update.{NODE2}_firmware", RELAY]
    # its next firmware reports it: the entity comes
    publish_info(hass, NODE2, info(micropython="1.24.1"))
    publish_info(hass, NODE2, info(micropython="1.24.1"))
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("on", "1.24.1", "1.25.0")
    assert len(hass.states.async_entity_ids("update")) == 3


async def test_both_entities_come_back_with_the_next_info(
    hass: HomeAssistant, node: FakeNode, setup: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    device = device_registry.async_get_device_by_identifier(node_identifier(RELAY_NODE), setup.entry_id)
    assert device is not None
    device_registry.async_remove_device(device.id)
    await hass.async_block_till_done()
    assert hass.states.async_entity_ids("update") == []
    publish_info(hass, RELAY_NODE, info(micropython=RUNNING))
    await hass.async_block_till_done()
    assert sorted(hass.states.async_entity_ids("update")) == [RELAY, MICROPYTHON]
    assert versions(hass, MICROPYTHON) == ("on", RUNNING, "1.25.0")


async def test_without_an_image_only_the_running_version_shows(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    tmp_path: Path,
) -> None:
    async with running_hub(hass, server_config_entry, make_bundle(tmp_path / "fw")):
        publish_info(hass, RELAY_NODE, info(micropython=RUNNING))
        await hass.async_block_till_done()
        # up to date with what this install carries (nothing), and why
        assert versions(hass, MICROPYTHON) == ("off", RUNNING, RUNNING)
        summary = hass.states.get(MICROPYTHON).attributes["release_summary"]  # type: ignore[union-attr]
        assert summary.startswith("No MicroPython image is configured")
        assert len(summary) <= 255
        with pytest.raises(HomeAssistantError, match="No update available"):
            await install(hass, MICROPYTHON)


def options(entry: MockConfigEntry, image: str) -> dict[str, Any]:
    return {**entry.options, CONF_STORAGE: "smartserver", CONF_MICROPYTHON_IMAGE: image}


async def test_the_image_in_the_options_comes_before_the_bundled_one(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    bundle_dir: Path,
) -> None:
    write(Path(hass.config.path("smartserver", "images", "mp.app-bin")), app_image("v1.26.0"))
    server_config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        server_config_entry, options=options(server_config_entry, "images/mp.app-bin")
    )
    async with running_hub(hass, server_config_entry, bundle_dir):
        publish_info(hass, RELAY_NODE, info(micropython=RUNNING))
        await hass.async_block_till_done()
        assert versions(hass, MICROPYTHON) == ("on", RUNNING, "1.26.0")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("gone.app-bin", None, "No such file or directory"),
        ("esphome.app-bin", app_image("2025.5.0", project=b"esphome"), "not a MicroPython ESP32 app image"),
        ("../outside.app-bin", app_image(), "not inside the storage folder"),
    ],
    ids=["missing", "esphome", "outside"],
)
async def test_an_unusable_image_in_the_options_offers_nothing_and_says_why(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    bundle_dir: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content: bytes | None,
    reason: str,
) -> None:
    """Not replaced by the bundled image either: the user chose this file."""
    if content is not None:
        write(Path(hass.config.path("smartserver", name)), content)
    server_config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(server_config_entry, options=options(server_config_entry, name))
    async with running_hub(hass, server_config_entry, bundle_dir):
        publish_info(hass, RELAY_NODE, info(micropython=RUNNING))
        await hass.async_block_till_done()
        assert versions(hass, MICROPYTHON) == ("off", RUNNING, RUNNING)
        summary = hass.states.get(MICROPYTHON).attributes["release_summary"]  # type: ignore[union-attr]
        assert summary.startswith("The MicroPython image cannot be used")
        assert reason in summary
        assert f"MicroPython image {name} cannot be used" in caplog.text


# Up to date --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (info(micropython="1.25.0"), ("off", "1.25.0", "1.25.0")),
        (info(micropython="1.26.0"), ("off", "1.26.0", "1.25.0")),
        # this very image confirmed: up to date, whatever the running version says
        (image_info(micropython="1.25.0-local"), ("off", "1.25.0", "1.25.0")),
        (image_info(result="trial", micropython="1.25.0-local"), ("on", "1.25.0-local", "1.25.0")),
        (image_info(result="rolled back", micropython=RUNNING), ("on", RUNNING, "1.25.0")),
        (image_info(sha="0" * 64, micropython=RUNNING), ("on", RUNNING, "1.25.0")),
    ],
    ids=["same-version", "newer", "same-image", "on-trial", "rolled-back", "other-image"],
)
async def test_up_to_date_by_version_or_by_the_image_confirmed(
    hass: HomeAssistant, setup: MockConfigEntry, payload: str, expected: tuple[str, str, str]
) -> None:
    publish_info(hass, RELAY_NODE, payload)
    await hass.async_block_till_done()
    assert versions(hass, MICROPYTHON) == expected


# Install -----------------------------------------------------------------------------


async def test_install_sends_the_image_and_waits_for_the_confirmation(
    hass: HomeAssistant, node: FakeNode
) -> None:
    node.script["image"] = [
        (0, "more", b"written 65536"),
        (1, "more", b"written 131072"),
        (2, "ok", SHA.encode()),
    ]
    progress = progress_of(hass, MICROPYTHON)
    await install(hass, MICROPYTHON)
    assert node.image == IMAGE
    assert [c.cmd for c in node.commands] == ["image"]
    assert node.commands[0].arg == image_arg(IMAGE, "1.25.0") == f"{SHA}\n{len(IMAGE)}\n1.25.0"
    assert versions(hass, MICROPYTHON) == ("off", "1.25.0", "1.25.0")
    # bytes sent, up to 90 %, kept until the node confirmed
    shown = [p for p in progress if p is not None]
    assert shown[0] == 0
    assert shown == sorted(shown)
    assert len(shown) > 10
    assert shown[-1] == 90
    assert progress[-1] is None
    state = hass.states.get(MICROPYTHON)
    assert state is not None
    assert state.attributes["in_progress"] is False


async def test_a_refusal_is_an_error_the_user_can_read(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["image"] = [(0, "err", b"refused: no OTA partition: flash an OTA build over USB first")]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, MICROPYTHON)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "micropython_refused"
    assert str(err.value) == (
        f"Node `{RELAY_NODE}` refused the MicroPython update: "
        "refused: no OTA partition: flash an OTA build over USB first"
    )
    # refused at the command: HA stopped sending the image
    assert node.data_chunks < len(IMAGE) // 1400 // 2
    assert versions(hass, MICROPYTHON) == ("on", RUNNING, "1.25.0")
    assert hass.states.get(MICROPYTHON).attributes["in_progress"] is False  # type: ignore[union-attr]


async def test_a_refusal_after_the_last_chunk_is_an_error_too(hass: HomeAssistant, node: FakeNode) -> None:
    """For example the hash, or set_boot refusing the image: the data went out whole."""
    node.script["image"] = [
        (0, "more", b"written 65536"),
        (0, "more", b"written 65536"),  # an MQTT redelivery: dropped
        (1, "err", b"set_boot refused the image"),
    ]
    with pytest.raises(
        HomeAssistantError, match=r"refused the MicroPython update: set_boot refused the image"
    ):
        await install(hass, MICROPYTHON)


async def test_a_lost_reply_chunk_is_no_success(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["image"] = [(0, "more", b"written 65536"), (2, "ok", SHA.encode())]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_reply_gap"
    # the node reported 3 times 64 KB written before: their chunks count first
    assert "sent reply chunk 5 of the MicroPython update where chunk 4 was due" in str(err.value)


async def test_a_rollback_is_an_error(hass: HomeAssistant, node: FakeNode) -> None:
    node.after_image = [image_info(result="trial"), image_info(result="rolled back", micropython=RUNNING)]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_rolled_back"
    assert str(err.value) == (
        f"Node `{RELAY_NODE}` did not run MicroPython 1.25.0 healthily: its bootloader went back "
        "to the previous MicroPython; see the node's log"
    )
    assert versions(hass, MICROPYTHON) == ("on", RUNNING, "1.25.0")


async def test_another_images_end_is_not_the_verdict(hass: HomeAssistant, node: FakeNode) -> None:
    """Confirmed for another SHA-256, or still on trial: no verdict; the wait runs out."""
    node.after_image = [image_info(sha="0" * 64), image_info(result="trial")]
    with (
        patch("custom_components.smartserver.mgmt.CONFIRM_TIMEOUT_S", 0.1),
        pytest.raises(HomeAssistantError) as err,
    ):
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_not_confirmed"
    assert "has not confirmed MicroPython 1.25.0 yet" in str(err.value)


async def test_a_node_that_does_not_answer(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["image"] = [(0, "more", b"written 65536")]
    with (
        patch("custom_components.smartserver.mgmt.IMAGE_REPLY_TIMEOUT_S", 0.05),
        pytest.raises(HomeAssistantError) as err,
    ):
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_no_answer"
    assert "did not answer the MicroPython update" in str(err.value)


async def test_the_image_goes_out_no_further_than_128_kb_ahead_of_the_node(
    hass: HomeAssistant, node: FakeNode
) -> None:
    # mosquitto drops what exceeds a client's queue (1000 messages by default): a node
    # that reports nothing written gets no more than the window
    node.progress = False
    with (
        patch("custom_components.smartserver.mgmt.IMAGE_REPLY_TIMEOUT_S", 0.05),
        pytest.raises(HomeAssistantError) as err,
    ):
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_no_answer"
    assert node.data_chunks == -(-128 * 1024 // CHUNK)
    assert node.image is None


async def test_a_node_that_wrote_another_image_is_no_success(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["image"] = [(0, "ok", b"0" * 64)]
    node.after_image = [image_info(result="confirmed")]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_refused"
    assert "wrote an image with SHA-256" in str(err.value)


async def test_an_image_changed_since_setup_is_not_sent(
    hass: HomeAssistant, node: FakeNode, bundle_dir: Path
) -> None:
    (bundle_dir / "micropython.app-bin").write_bytes(app_image("v1.25.0", size=100_000))
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, MICROPYTHON)
    assert err.value.translation_key == "micropython_image_unreadable"
    assert str(err.value) == (
        f"The MicroPython image `micropython.app-bin` was not sent to node `{RELAY_NODE}`: the file "
        "changed since SmartServer loaded it. Check the file and reload SmartServer"
    )
    assert node.commands == []
    (bundle_dir / "micropython.app-bin").unlink()
    with pytest.raises(HomeAssistantError, match="No such file or directory"):
        await install(hass, MICROPYTHON)
    assert node.commands == []


@pytest.mark.parametrize(
    ("first", "second", "key"),
    [
        (MICROPYTHON, RELAY, "micropython_update_running"),
        (RELAY, MICROPYTHON, "firmware_update_running"),
    ],
    ids=["firmware-during-micropython", "micropython-during-firmware"],
)
async def test_one_install_at_a_time_per_node(
    hass: HomeAssistant, node: FakeNode, first: str, second: str, key: str
) -> None:
    """The node is busy with one (it has not answered yet): the other is refused."""
    publish_info(hass, RELAY_NODE, info(micropython=RUNNING))  # firmware 0.1.0: both offered
    node.script["image"] = node.script["put"] = [(0, "more", b"")]  # never ends
    running = hass.async_create_task(install(hass, first))
    async with asyncio.timeout(5):
        await node.commanded.wait()
    with pytest.raises(HomeAssistantError) as err:
        await install(hass, second)
    assert err.value.translation_key == key
    assert [c.cmd for c in node.commands] == ["image" if first == MICROPYTHON else "put"]
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # over: the other may run now
    node.script.clear()
    node.after_update = [
        info(VERSION, BUILD, {"result": "confirmed", "version": VERSION}, micropython=RUNNING)
    ]
    await install(hass, second)


async def test_no_install_without_the_nodes_key(hass: HomeAssistant, node: FakeNode) -> None:
    publish_info(hass, NODE2, info(micropython=RUNNING))
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("on", RUNNING, "1.25.0")
    with pytest.raises(HomeAssistantError):
        await install(hass, OTHER)
    assert node.commands == []


# Options -----------------------------------------------------------------------------

GOOD = {
    CONF_STORAGE: "smartserver",
    CONF_LOG_MAX_KB: 1024.0,
    CONF_LOG_BACKUPS: 5.0,
    CONF_EVENT_LEVEL: "warning",
    CONF_RATE_LIMIT: 5.0,
}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("nothing.app-bin", "image_not_found"),
        ("images", "image_not_found"),
        ("../outside.app-bin", "image_outside_storage"),
        ("/etc/hostname", "image_outside_storage"),
        ("images/firmware.bin", "invalid_image"),
        ("images/esphome.app-bin", "invalid_image"),
    ],
    ids=["missing", "folder", "parent", "absolute", "not-an-image", "esphome"],
)
async def test_options_refuse_what_is_no_micropython_image_in_the_storage_folder(
    hass: HomeAssistant, init_integration: MockConfigEntry, name: str, error: str
) -> None:
    images = Path(hass.config.path("smartserver", "images"))
    write(images / "firmware.bin", b"\x00" * 4096)
    write(images / "esphome.app-bin", app_image("2025.5.0", project=b"esphome"))
    write(Path(hass.config.path("outside.app-bin")), app_image())
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**init_integration.options, **GOOD, CONF_MICROPYTHON_IMAGE: name}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_MICROPYTHON_IMAGE: error}
    assert CONF_MICROPYTHON_IMAGE not in init_integration.options


async def test_options_take_an_image_and_clear_it(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    write(Path(hass.config.path("store", "images", "mp.app-bin")), app_image())
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    # relative to the storage folder entered in the same step
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **init_integration.options,
            **GOOD,
            CONF_STORAGE: "store",
            CONF_MICROPYTHON_IMAGE: " images/mp.app-bin ",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options[CONF_MICROPYTHON_IMAGE] == "images/mp.app-bin"
    await hass.async_block_till_done()
    # cleared: the form leaves an empty optional field out
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**init_integration.options, **GOOD, CONF_STORAGE: "store"} | {CONF_MICROPYTHON_IMAGE: ""},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options[CONF_MICROPYTHON_IMAGE] == ""
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    data = {**init_integration.options, **GOOD, CONF_STORAGE: "store"}
    del data[CONF_MICROPYTHON_IMAGE]
    result = await hass.config_entries.options.async_configure(result["flow_id"], data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options[CONF_MICROPYTHON_IMAGE] == ""
