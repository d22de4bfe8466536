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
def node_device_link(hass: HomeAssistant, entry_id: str, node_id: str) -> dr.DeviceEntry:
    """Return the node's device, created if new, without touching its name."""
    registry = dr.async_get(hass)
    # Look up first: get_or_create with node_device_info would reset the name.
    device = registry.async_get_device_by_identifier(node_identifier(node_id), entry_id)
    if device is None:
        device = registry.async_get_or_create(config_entry_id=entry_id, **node_device_info(node_id))
    return device


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
        info["via_device_id"] = node_device_link(hass, entry_id, relay_node).id
    return info
