"""Firmware update entities: one per node that runs this firmware (docs/management.md).

A node gets its entity the first time it publishes a valid retained `info` (installed
version and build); the relay nodes of configured servers get theirs at setup. The
latest version comes from the firmware bundled with the integration release
(`firmware/` next to this file, made by script/release). Install, offered only for
nodes whose key HA knows (relay nodes), runs in the firmware manager (mgmt.py); the
entity shows its progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components.update import UpdateEntity, UpdateEntityFeature
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import mgmt
from .coordinator import SmartServerConfigEntry
from .entity import SmartServerEntity
from .helpers import node_device_link, node_identifier
from .mgmt import FirmwareManager, NodeFirmware

PARALLEL_UPDATES = 1

NO_BUNDLE = (
    "This install of SmartServer carries no usable node firmware (it was not installed from a "
    "release zip, or its files do not match their manifest): no update is offered."
)


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add an entity per relay node now and one per node when it first publishes info."""
    bundle = await hass.async_add_executor_job(mgmt.load_bundle, mgmt.BUNDLE_DIR)
    # Install needs the node's key: HA knows those of its servers' relay nodes.
    keys: dict[str, str] = {}
    for server in entry.runtime_data.servers.servers.values():
        if server.config.relay_node:  # a server without a node has no node key in use
            keys.setdefault(server.config.relay_node, server.config.node_key)

    @callback
    def entity(firmware: NodeFirmware) -> NodeFirmwareEntity:
        # On the node's device, which belongs to the hub entry (created here if new).
        node_device_link(hass, entry.entry_id, firmware.node_id)
        return NodeFirmwareEntity(firmware, manager.forget)

    manager = FirmwareManager(
        entry.runtime_data.coordinator.link(),
        entry.runtime_data.base_topic,
        bundle,
        keys,
        lambda firmware: async_add_entities([entity(firmware)]),
    )
    async_add_entities([entity(manager.add(node)) for node in keys])
    entry.async_on_unload(await manager.start())


class NodeFirmwareEntity(SmartServerEntity, UpdateEntity):
    """A node's firmware: installed, bundled, and (with the node's key) the install."""

    _attr_translation_key = "firmware"

    def __init__(self, firmware: NodeFirmware, forget: Callable[[NodeFirmware], None]) -> None:
        """Describe the entity of one node; without its key it offers no install."""
        self.firmware = firmware
        self._forget = forget
        node = firmware.node_id
        self._attr_unique_id = f"node_{node}_firmware"
        # Identifiers only: a name here would overwrite the one from device_names.yaml.
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node)})
        self._attr_supported_features = UpdateEntityFeature.RELEASE_NOTES
        if firmware.can_install:
            self._attr_supported_features |= UpdateEntityFeature.INSTALL | UpdateEntityFeature.PROGRESS
        self._other_build = False

    async def async_added_to_hass(self) -> None:
        """Follow the node's infos (an install follows the replies itself)."""
        await super().async_added_to_hass()
        self._show()
        self.async_on_remove(self.firmware.add_listener(self._on_info))

    async def async_will_remove_from_hass(self) -> None:
        """Let the manager add the entity again when the node's info comes back."""
        self._forget(self.firmware)

    @callback
    def _on_info(self) -> None:
        self._show()
        self.async_write_ha_state()

    def _show(self) -> None:
        """Take the installed version and build from the node's info."""
        info, bundle = self.firmware.info, self.firmware.bundle
        # Same version, another build (both known): the bundled one is an update.
        self._other_build = False
        if info is not None and bundle is not None:
            self._other_build = bool(
                info.version == bundle.version and info.build and bundle.build and info.build != bundle.build
            )
            if self._other_build:
                self._attr_installed_version = f"{info.version}+{info.build}"
                self._attr_latest_version = f"{bundle.version}+{bundle.build}"
                return
        self._attr_installed_version = info.version if info else None
        self._attr_latest_version = bundle.version if bundle else None
        if bundle is None and info is not None:
            # nothing to offer, and HA would show "unknown": say so instead
            self._attr_latest_version = info.version
            self._attr_release_summary = NO_BUNDLE

    def version_is_newer(self, latest_version: str, installed_version: str) -> bool:
        """Return True for the bundled build of the installed version, else compare."""
        return self._other_build or super().version_is_newer(latest_version, installed_version)

    async def async_release_notes(self) -> str | None:
        """Return the bundled firmware's release notes."""
        return self.firmware.bundle.notes if self.firmware.bundle else None

    async def async_install(self, version: str | None, backup: bool, **kwargs: Any) -> None:
        """Install the bundled firmware; the manager raises what the node refused."""
        self._attr_in_progress = True
        self._progress(0)
        try:
            await self.firmware.install(self._progress)
        finally:
            self._attr_in_progress = False
            self._attr_update_percentage = None
            self.async_write_ha_state()

    @callback
    def _progress(self, percent: int) -> None:
        self._attr_update_percentage = percent
        self.async_write_ha_state()
