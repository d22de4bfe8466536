"""Update entities: a node's firmware and its MicroPython (docs/management.md).

A node gets its "Firmware" entity the first time it publishes a valid retained `info`
(installed version and build), and its "MicroPython" entity the first time that info
carries the running MicroPython's version; the relay nodes of configured servers get
their firmware entity at setup. The latest firmware comes from the firmware bundled with
the integration release (`firmware/` next to this file, made by script/release), the
latest MicroPython from the image named in the options or bundled
(`firmware/micropython.app-bin`). Install, offered only for nodes whose key HA knows
(relay nodes), runs in the firmware manager (mgmt.py); the entity shows its progress.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.update import UpdateEntity, UpdateEntityDescription, UpdateEntityFeature
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import mgmt
from .app_image import Image, ImageError, find_image
from .const import CONF_MICROPYTHON_IMAGE
from .coordinator import SmartServerConfigEntry
from .entity import SmartServerEntity
from .helpers import node_device_link, node_identifier
from .mgmt import FirmwareManager, NodeFirmware
from .mgmt_framing import CONFIRMED, image_verdict

# Installs on different nodes may run side by side; on one node the manager allows one.
PARALLEL_UPDATES = 0

FIRMWARE = UpdateEntityDescription(key="firmware", translation_key="firmware")
MICROPYTHON = UpdateEntityDescription(key="micropython", translation_key="micropython")

NO_BUNDLE = (
    "This install of SmartServer carries no usable node firmware (it was not installed from a "
    "release zip, or its files do not match their manifest): no update is offered."
)
NO_IMAGE = (
    "No MicroPython image is configured: put a MicroPython .app-bin in the storage folder and "
    "name it in SmartServer's options (see docs/management.md). No update is offered."
)
BAD_IMAGE = "The MicroPython image cannot be used ({reason}): no update is offered."


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add a firmware entity per relay node now, and a node's entities with its infos."""
    bundle = await hass.async_add_executor_job(mgmt.load_bundle, mgmt.BUNDLE_DIR)
    image = await hass.async_add_executor_job(
        find_image,
        entry.runtime_data.nodes.options.storage,
        entry.options.get(CONF_MICROPYTHON_IMAGE, ""),
        mgmt.BUNDLE_DIR,
    )
    # Install needs the node's key: HA knows those of its servers' relay nodes.
    keys: dict[str, str] = {}
    for server in entry.runtime_data.servers.servers.values():
        if server.config.relay_node:  # a server without a node has no node key in use
            keys.setdefault(server.config.relay_node, server.config.node_key)

    @callback
    def add_missing(firmware: NodeFirmware) -> None:
        """Add the entities the node lacks (new, or removed with its device)."""
        entities: list[NodeUpdateEntity] = []
        if FIRMWARE.key not in firmware.shown:
            entities.append(NodeFirmwareEntity(firmware))
        if MICROPYTHON.key not in firmware.shown and firmware.info and firmware.info.micropython:
            entities.append(NodeMicroPythonEntity(firmware, image))
        if entities:
            # On the node's device, which belongs to the hub entry (created here if new).
            node_device_link(hass, entry.entry_id, firmware.node_id)
            async_add_entities(entities)

    manager = FirmwareManager(
        entry.runtime_data.coordinator.link(), entry.runtime_data.base_topic, bundle, keys, add_missing
    )
    for node in keys:
        add_missing(manager.add(node))
    entry.async_on_unload(await manager.start())


class NodeUpdateEntity(SmartServerEntity, UpdateEntity):
    """One software part of a node: versions from its info, and (with its key) the install."""

    def __init__(self, firmware: NodeFirmware, description: UpdateEntityDescription) -> None:
        """Describe the entity of one node; without its key it offers no install."""
        self.entity_description = description
        self.firmware = firmware
        firmware.shown.add(description.key)
        node = firmware.node_id
        self._attr_unique_id = f"node_{node}_{description.key}"
        # Identifiers only: a name here would overwrite the one from device_names.yaml.
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node)})
        # UpdateEntity's rule, which a description would override: config if it installs
        self._attr_entity_category = EntityCategory.DIAGNOSTIC
        if firmware.can_install:
            self._attr_supported_features |= UpdateEntityFeature.INSTALL | UpdateEntityFeature.PROGRESS
            self._attr_entity_category = EntityCategory.CONFIG

    async def async_added_to_hass(self) -> None:
        """Follow the node's infos (an install follows the replies itself)."""
        await super().async_added_to_hass()
        self._show()
        self.async_on_remove(self.firmware.add_listener(self._on_info))

    async def async_will_remove_from_hass(self) -> None:
        """Let the node's next info add the entity again (its device was removed)."""
        self.firmware.shown.discard(self.entity_description.key)

    @callback
    def _on_info(self) -> None:
        self._show()
        self.async_write_ha_state()

    def _show(self) -> None:
        """Take the versions from the node's info."""
        raise NotImplementedError

    async def async_install(self, version: str | None, backup: bool, **kwargs: Any) -> None:
        """Run the install; the manager raises what the node refused."""
        self._attr_in_progress = True
        self._progress(0)
        try:
            await self._install()
        finally:
            self._attr_in_progress = False
            self._attr_update_percentage = None
            self.async_write_ha_state()

    async def _install(self) -> None:
        raise NotImplementedError

    @callback
    def _progress(self, percent: int) -> None:
        self._attr_update_percentage = percent
        self.async_write_ha_state()


class NodeFirmwareEntity(NodeUpdateEntity):
    """A node's firmware: installed, bundled, and (with the node's key) the install."""

    _attr_supported_features = UpdateEntityFeature.RELEASE_NOTES

    def __init__(self, firmware: NodeFirmware) -> None:
        """Describe the firmware entity of one node."""
        super().__init__(firmware, FIRMWARE)
        self._other_build = False

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

    async def _install(self) -> None:
        await self.firmware.install(self._progress)


class NodeMicroPythonEntity(NodeUpdateEntity):
    """A node's MicroPython: running version, the configured image, and its install."""

    _attr_supported_features = UpdateEntityFeature(0)

    def __init__(self, firmware: NodeFirmware, image: Image | ImageError | None) -> None:
        """Describe the MicroPython entity of one node, offering `image` if it is one."""
        super().__init__(firmware, MICROPYTHON)
        self.image = image if isinstance(image, Image) else None
        if image is None:
            self._attr_release_summary = NO_IMAGE
        elif isinstance(image, ImageError):
            self._attr_release_summary = BAD_IMAGE.format(reason=image)[:255]

    def _show(self) -> None:
        """Show the running version from the info, or the image's once the node runs it."""
        info, image = self.firmware.info, self.image
        installed = info.micropython if info and info.micropython else None
        if image is None:
            # nothing to offer, and HA would show "unknown": say so instead
            self._attr_installed_version = self._attr_latest_version = installed
            return
        if info is not None and image_verdict(info.image, image.sha256) == CONFIRMED:
            installed = image.version  # this very image: up to date whatever its label says
        self._attr_installed_version = installed
        self._attr_latest_version = image.version

    async def _install(self) -> None:
        image = self.image
        assert image is not None  # HA offers install only with a newer latest version
        await self.firmware.install_image(
            image, lambda: self.hass.async_add_executor_job(image.read), self._progress
        )
