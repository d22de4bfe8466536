"""Helpers shared by the SmartServer platforms."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo

from .const import DOMAIN


def node_identifier(node_id: str) -> tuple[str, str]:
    """Device registry identifier of an ESP32 node."""
    return (DOMAIN, f"node_{node_id}")


def server_identifier(server_id: str) -> tuple[str, str]:
    """Device registry identifier of a homelab server."""
    return (DOMAIN, f"server_{server_id}")


def node_device_info(node_id: str, name: str | None = None) -> DeviceInfo:
    """Device info of a node; the name comes from device_names.yaml when set."""
    return DeviceInfo(
        identifiers={node_identifier(node_id)},
        name=name or node_id,
        manufacturer="SmartServer",
        model="ESP32 node",
    )


@callback
def server_device_info(
    hass: HomeAssistant, entry_id: str, server_id: str, name: str, relay_node: str | None
) -> DeviceInfo:
    """Device info of a server, linked via its relay node (created here if new)."""
    info = DeviceInfo(
        identifiers={server_identifier(server_id)},
        name=name,
        manufacturer="SmartServer",
        model="Homelab server",
    )
    if relay_node:
        registry = dr.async_get(hass)
        # Look up first: get_or_create would reset a name from device_names.yaml.
        node = registry.async_get_device_by_identifier(node_identifier(relay_node), entry_id)
        if node is None:
            node = registry.async_get_or_create(config_entry_id=entry_id, **node_device_info(relay_node))
        info["via_device_id"] = node.id
    return info
