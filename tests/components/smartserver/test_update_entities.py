"""The firmware update entities on the mocked MQTT client: one per node, versions and
builds, and the install against a scripted node (replies refused, lost, repeated)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.components.update import UpdateEntityFeature
from homeassistant.const import ATTR_SUPPORTED_FEATURES
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.smartserver.const import DOMAIN
from custom_components.smartserver.helpers import node_device_info, node_identifier
from script.harness.ha import RELAY_NODE

from . import update_common
from .update_common import (
    BUILD,
    FILES,
    NODE2,
    OTHER,
    RELAY,
    VERSION,
    FakeNode,
    info,
    install,
    make_bundle,
    progress_of,
    publish_info,
    running_hub,
    versions,
)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """The bundled firmware: 0.2.0 with the build of FILES."""
    return make_bundle(tmp_path / "firmware")


@pytest.fixture
def fake_node(hass: HomeAssistant) -> FakeNode:
    """relay1 on 0.1.0; confirms 0.2.0 after update."""
    return FakeNode(hass, after_update=[info(VERSION, BUILD, {"result": "confirmed", "version": VERSION})])


# the shared fixtures: pytest finds them as this module's attributes
setup = update_common.setup
node = update_common.node


# One entity per node -------------------------------------------------------------------


async def test_entities(
    hass: HomeAssistant,
    setup: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The relay node's entity (install) and one of a node whose key HA lacks (none)."""
    publish_info(hass, RELAY_NODE, info())
    publish_info(hass, NODE2, info(VERSION, BUILD))
    await hass.async_block_till_done()
    await snapshot_platform(hass, entity_registry, snapshot, setup.entry_id)


async def test_a_node_gets_its_entity_with_its_first_info(
    hass: HomeAssistant, setup: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    assert hass.states.get(OTHER) is None
    # A pysmartnode node: status and logs, never info.
    async_fire_mqtt_message(hass, "home/node/pysmart1/status", "ONLINE", retain=True)
    async_fire_mqtt_message(hass, "home/log/info/pysmart1", "booted")
    publish_info(hass, NODE2, info())
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("on", "0.1.0", VERSION)
    state = hass.states.get(OTHER)
    assert state is not None
    assert state.attributes[ATTR_SUPPORTED_FEATURES] == UpdateEntityFeature.RELEASE_NOTES
    # Later infos update it; none adds a second entity.
    publish_info(hass, NODE2, info(VERSION, BUILD))
    publish_info(hass, NODE2, info(VERSION, BUILD))
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("off", VERSION, VERSION)
    firmware = [e.entity_id for e in er.async_entries_for_config_entry(entity_registry, setup.entry_id)]
    assert sorted(firmware) == [OTHER, RELAY]
    assert hass.states.get("update.pysmart1_firmware") is None
    entry = entity_registry.async_get(OTHER)
    assert entry is not None
    assert entry.unique_id == f"node_{NODE2}_firmware"


async def test_entities_come_back_after_a_restart(
    hass: HomeAssistant, setup: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """The retained info finds the node again: same entity, no duplicate."""
    publish_info(hass, NODE2, info(), retain=True)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_reload(setup.entry_id)
    await hass.async_block_till_done()
    publish_info(hass, NODE2, info(), retain=True)  # the broker delivers the stored info again
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("on", "0.1.0", VERSION)
    ids = sorted(e.entity_id for e in er.async_entries_for_config_entry(entity_registry, setup.entry_id))
    assert ids == [OTHER, RELAY]


async def test_the_device_name_is_kept(
    hass: HomeAssistant, setup: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """Linked by identifiers: the name from device_names.yaml stays."""
    device_registry.async_get_or_create(
        config_entry_id=setup.entry_id, **node_device_info(NODE2, "Rack switch")
    )
    publish_info(hass, NODE2, info())
    await hass.async_block_till_done()
    device = device_registry.async_get_device_by_identifier(node_identifier(NODE2), setup.entry_id)
    assert device is not None
    assert device.name == "Rack switch"
    registry = er.async_get(hass)
    entity_id = registry.async_get_entity_id("update", DOMAIN, f"node_{NODE2}_firmware")
    assert entity_id == "update.rack_switch_firmware"
    entry = registry.async_get(entity_id)
    assert entry is not None
    assert entry.device_id == device.id


@pytest.mark.parametrize(
    "node_id",
    ["bad.id", "..", "a" * 65, "nöde", "node%2F1"],
    ids=["dot", "dots", "long", "umlaut", "encoded"],
)
async def test_hostile_node_ids_are_refused(
    hass: HomeAssistant,
    setup: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    caplog: pytest.LogCaptureFixture,
    node_id: str,
) -> None:
    publish_info(hass, node_id, info())
    publish_info(hass, node_id, info())
    await hass.async_block_till_done()
    assert hass.states.async_entity_ids("update") == [RELAY]
    assert device_registry.async_get_device_by_identifier(node_identifier(node_id), setup.entry_id) is None
    assert caplog.text.count("not a valid node id") == 1


async def test_topics_not_of_a_node_info_are_ignored(hass: HomeAssistant, setup: MockConfigEntry) -> None:
    # Same filter, other levels: a base with another prefix cannot match, nor a deeper leaf.
    async_fire_mqtt_message(hass, "home/node/node3/info/extra", info())
    async_fire_mqtt_message(hass, "other/node/node3/info", info())
    await hass.async_block_till_done()
    assert hass.states.async_entity_ids("update") == [RELAY]


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        '{"build": "abc"}',
        '{"version": true}',
        '{"version": ""}',
        '{"version": {"x": 1}}',
        json.dumps({"version": "1.0", "pad": "x" * 5000}),
    ],
    ids=["text", "list", "no-version", "bool", "empty", "object", "huge"],
)
async def test_invalid_info_adds_no_entity(
    hass: HomeAssistant, setup: MockConfigEntry, caplog: pytest.LogCaptureFixture, payload: str
) -> None:
    publish_info(hass, NODE2, payload)
    publish_info(hass, RELAY_NODE, payload)
    await hass.async_block_till_done()
    assert hass.states.get(OTHER) is None
    assert versions(hass, RELAY) == ("unknown", None, VERSION)
    assert "info that is not a JSON object with a version" in caplog.text


async def test_a_cleared_info_is_ignored_quietly(
    hass: HomeAssistant, setup: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    publish_info(hass, RELAY_NODE, info())
    publish_info(hass, RELAY_NODE, b"")
    publish_info(hass, NODE2, b"")
    await hass.async_block_till_done()
    assert versions(hass, RELAY) == ("on", "0.1.0", VERSION)
    assert hass.states.get(OTHER) is None
    assert "Ignored" not in caplog.text


async def test_a_removed_device_comes_back_with_the_next_info(
    hass: HomeAssistant, setup: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    publish_info(hass, NODE2, info())
    await hass.async_block_till_done()
    device = device_registry.async_get_device_by_identifier(node_identifier(NODE2), setup.entry_id)
    assert device is not None
    device_registry.async_remove_device(device.id)
    await hass.async_block_till_done()
    assert hass.states.get(OTHER) is None
    publish_info(hass, NODE2, info())
    await hass.async_block_till_done()
    assert versions(hass, OTHER) == ("on", "0.1.0", VERSION)


async def test_the_relay_node_keeps_install_when_its_info_comes_first(
    hass: HomeAssistant, setup: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """Re-added from its info after its device was removed, the relay node keeps its key."""
    device = device_registry.async_get_device_by_identifier(node_identifier(RELAY_NODE), setup.entry_id)
    assert device is not None
    device_registry.async_remove_device(device.id)
    await hass.async_block_till_done()
    assert hass.states.get(RELAY) is None
    publish_info(hass, RELAY_NODE, info())
    await hass.async_block_till_done()
    state = hass.states.get(RELAY)
    assert state is not None
    assert state.attributes[ATTR_SUPPORTED_FEATURES] & UpdateEntityFeature.INSTALL


async def test_release_notes_are_the_bundled_changelog(
    hass: HomeAssistant, setup: MockConfigEntry, hass_ws_client: Any
) -> None:
    client = await hass_ws_client(hass)
    await client.send_json({"id": 1, "type": "update/release_notes", "entity_id": RELAY})
    result = await client.receive_json()
    assert result["result"] == f"## {VERSION}\n\n- test release\n"


async def test_a_node_without_its_key_in_ha_offers_no_install(
    hass: HomeAssistant, setup: MockConfigEntry
) -> None:
    publish_info(hass, NODE2, info())
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError):
        await install(hass, OTHER)
    assert versions(hass, OTHER) == ("on", "0.1.0", VERSION)


# Versions and builds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        (info("0.1.0", "0123456789ab"), ("on", "0.1.0", VERSION)),
        (info(VERSION, BUILD), ("off", VERSION, VERSION)),
        (info(VERSION, "0123456789ab"), ("on", f"{VERSION}+0123456789ab", f"{VERSION}+{BUILD}")),
        (info(VERSION, ""), ("off", VERSION, VERSION)),
        (info(VERSION, None), ("off", VERSION, VERSION)),
        (info("0.3.0", "0123456789ab"), ("off", "0.3.0", VERSION)),
    ],
    ids=["older", "same-build", "other-build", "no-build", "build-missing", "newer"],
)
async def test_the_build_counts_when_the_version_is_the_same(
    hass: HomeAssistant, setup: MockConfigEntry, installed: str, expected: tuple[str, str, str]
) -> None:
    publish_info(hass, RELAY_NODE, installed)
    await hass.async_block_till_done()
    assert versions(hass, RELAY) == expected


async def test_a_bundle_without_build_compares_versions_only(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    tmp_path: Path,
) -> None:
    async with running_hub(hass, server_config_entry, make_bundle(tmp_path / "fw", build="")):
        publish_info(hass, RELAY_NODE, info(VERSION, "0123456789ab"))
        await hass.async_block_till_done()
        assert versions(hass, RELAY) == ("off", VERSION, VERSION)


async def test_without_a_bundle_only_the_installed_version_shows(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
) -> None:
    async with running_hub(hass, server_config_entry, Path("/nonexistent")):
        assert versions(hass, RELAY) == ("unknown", None, None)  # nothing known yet
        publish_info(hass, RELAY_NODE, info())
        await hass.async_block_till_done()
        # no "unknown" once the node's version is known: nothing to offer, and why
        assert versions(hass, RELAY) == ("off", "0.1.0", "0.1.0")
        summary = hass.states.get(RELAY).attributes["release_summary"]  # type: ignore[union-attr]
        assert "no usable node firmware" in summary
        assert len(summary) <= 255


async def test_a_corrupt_bundle_is_not_offered(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
    bundle_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (bundle_dir / "node.mpy").write_bytes(b"tampered")
    async with running_hub(hass, server_config_entry, bundle_dir):
        publish_info(hass, RELAY_NODE, info())
        await hass.async_block_till_done()
        assert versions(hass, RELAY) == ("off", "0.1.0", "0.1.0")
        assert "node.mpy does not match its manifest" in caplog.text


# Install --------------------------------------------------------------------------------


async def test_install_stages_the_bundle_and_waits_for_the_confirmation(
    hass: HomeAssistant, node: FakeNode, bundle_dir: Path
) -> None:
    progress = progress_of(hass, RELAY)
    await install(hass)
    manifest = (bundle_dir / "manifest.json").read_bytes()
    assert node.files == {f"fw_new/{n}": d for n, d in FILES.items()} | {"fw_new/manifest.json": manifest}
    assert [c.cmd for c in node.commands] == ["put", "put", "put", "update"]
    assert node.commands[-1].arg == hashlib.sha256(manifest).hexdigest()
    assert versions(hass, RELAY) == ("off", VERSION, VERSION)
    # 90 % once staged, kept while the node reboots and reports (its info is a write too)
    assert [p for p in progress if p is not None] == [0, 2, 90, 90]
    assert progress[-1] is None


async def test_a_refusal_is_an_error_the_user_can_read(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["put"] = [(0, "err", b"refused: bad signature")]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "node_refused"
    assert str(err.value) == f"Node `{RELAY_NODE}` refused the firmware update: refused: bad signature"
    assert [c.cmd for c in node.commands] == ["put"]
    state = hass.states.get(RELAY)
    assert state is not None
    assert state.state == "on"
    assert state.attributes["in_progress"] is False


async def test_a_refused_update_command_is_an_error_too(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["update"] = [(0, "err", b"staged file node.mpy missing or corrupt")]
    with pytest.raises(HomeAssistantError, match=r"refused the firmware update: staged file node\.mpy"):
        await install(hass)
    assert versions(hass, RELAY) == ("on", "0.1.0", VERSION)


async def test_a_lost_reply_chunk_is_no_success(hass: HomeAssistant, node: FakeNode) -> None:
    """Chunk 0 never came, chunk 1 says ok: the install stops instead of going on."""
    node.script["put"] = [(1, "ok", b"")]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass)
    assert err.value.translation_key == "node_reply_gap"
    assert "sent reply chunk 1 of the firmware update where chunk 0 was due" in str(err.value)
    assert [c.cmd for c in node.commands] == ["put"]


async def test_a_repeated_reply_chunk_is_dropped(hass: HomeAssistant, node: FakeNode) -> None:
    """An MQTT redelivery of a chunk already taken is not a second chunk."""
    node.script["update"] = [(0, "more", b"swapping"), (0, "more", b"swapping"), (1, "ok", b"")]
    await install(hass)
    assert versions(hass, RELAY) == ("off", VERSION, VERSION)


async def test_a_reply_that_never_ends_times_out(hass: HomeAssistant, node: FakeNode) -> None:
    node.script["update"] = [(0, "more", b"")]
    with (
        patch("custom_components.smartserver.mgmt.REPLY_TIMEOUT_S", 0.05),
        pytest.raises(HomeAssistantError, match="did not answer the firmware update"),
    ):
        await install(hass)


async def test_other_replies_are_ignored(hass: HomeAssistant, node: FakeNode) -> None:
    """Not a reply chunk, or one for another command: the install carries on."""
    for payload in (b"garbage", b"abc 0 ok", b"abc x ok\n", b"abc 0 maybe\n", b"0123456789abcdef 0 ok\n"):
        async_fire_mqtt_message(hass, f"home/node/{RELAY_NODE}/mgmt/reply", payload)
    await install(hass)
    assert versions(hass, RELAY) == ("off", VERSION, VERSION)


async def test_only_this_build_confirmed_is_success(hass: HomeAssistant, node: FakeNode) -> None:
    """Same version, another build: a confirmed result of the installed one is not the verdict."""
    publish_info(hass, RELAY_NODE, info(VERSION, "0123456789ab", {"result": "confirmed", "version": VERSION}))
    await hass.async_block_till_done()
    assert versions(hass, RELAY)[0] == "on"
    node.after_update = [
        info(VERSION, "0123456789ab", {"result": "confirmed", "version": VERSION}),  # still the old one
        info("0.1.0", "0123456789ab", {"result": "rolled back", "version": "0.1.5"}),  # another update's
        info(VERSION, BUILD, None),  # rebooted, on trial
    ]
    with (
        patch("custom_components.smartserver.mgmt.CONFIRM_TIMEOUT_S", 0.1),
        pytest.raises(HomeAssistantError, match=r"has not confirmed firmware 0\.2\.0 yet"),
    ):
        await install(hass)
    publish_info(hass, RELAY_NODE, info(VERSION, BUILD, {"result": "confirmed", "version": VERSION}))
    await hass.async_block_till_done()
    assert versions(hass, RELAY) == ("off", VERSION, VERSION)


async def test_a_rollback_is_an_error(hass: HomeAssistant, node: FakeNode) -> None:
    node.after_update = [info("0.1.0", "0123456789ab", {"result": "rolled back", "version": VERSION})]
    with pytest.raises(HomeAssistantError) as err:
        await install(hass)
    assert err.value.translation_key == "firmware_rolled_back"
    assert "did not run firmware 0.2.0 healthily and rolled back" in str(err.value)
    assert versions(hass, RELAY) == ("on", "0.1.0", VERSION)
