"""The SmartServer integration: ESP32 nodes and homelab servers over MQTT (setup and unload only)."""

from __future__ import annotations

from homeassistant.components import mqtt
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .coordinator import SmartServerConfigEntry, build_runtime_data
from .helpers import node_id_of_device
from .services import async_setup_services

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.UPDATE,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's actions."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: SmartServerConfigEntry) -> bool:
    """Set up SmartServer from a config entry: the MQTT link around the platforms."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_ready")
    entry.runtime_data = build_runtime_data(hass, entry)
    coordinator = entry.runtime_data.coordinator
    await coordinator.async_start()
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await coordinator.async_start_nodes()
    return True


async def async_unload_entry(hass: HomeAssistant, entry: SmartServerConfigEntry) -> bool:
    """Unload a config entry; subscriptions end through entry.async_on_unload."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: SmartServerConfigEntry, device: dr.AnyDeviceEntry
) -> bool:
    """Allow removing a node's device once the node is stale; servers go with their subentry."""
    if (node_id := node_id_of_device(device)) is not None:
        return entry.runtime_data.nodes.async_remove_node(node_id)
    return False
