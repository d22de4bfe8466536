"""Helpers shared by the SmartServer platforms."""

from __future__ import annotations

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


def server_device_info(server_id: str, name: str, relay_node: str | None) -> DeviceInfo:
    """Device info of a server, reached through its relay node."""
    info = DeviceInfo(
        identifiers={server_identifier(server_id)},
        name=name,
        manufacturer="SmartServer",
        model="Homelab server",
    )
    if relay_node:
        info["via_device"] = node_identifier(relay_node)
    return info
