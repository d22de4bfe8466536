"""Helpers shared by the SmartServer modules: device identifiers and infos, repair issues, warnings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo

from . import protocol
from .const import DOMAIN, LOGGER, MAX_WARNED


def node_identifier(node_id: str) -> tuple[str, str]:
    """Device registry identifier of an ESP32 node."""
    return (DOMAIN, f"node_{node_id}")


def server_identifier(server_id: str) -> tuple[str, str]:
    """Device registry identifier of a homelab server."""
    return (DOMAIN, f"server_{server_id}")


def node_id_of_device(device: dr.AnyDeviceEntry) -> str | None:
    """Return the node id of a node's device, or None for other devices."""
    for domain, ident in device.identifiers:
        if domain == DOMAIN and ident.startswith("node_") and protocol.valid_name(ident[5:]):
            return ident[5:]
    return None


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


def server_device_info(server_id: str, name: str, relay_device_id: str | None) -> DeviceInfo:
    """Device info of a server, linked via its relay node's device (a server may have none)."""
    info = DeviceInfo(
        identifiers={server_identifier(server_id)},
        name=name,
        manufacturer="SmartServer",
        model="Homelab server",
    )
    if relay_device_id is not None:
        info["via_device_id"] = relay_device_id
    return info


@callback
def create_issue(
    hass: HomeAssistant,
    issue_id: str,
    key: str,
    placeholders: Mapping[str, str],
    *,
    severity: ir.IssueSeverity = ir.IssueSeverity.WARNING,
    data: dict[str, Any] | None = None,
) -> None:
    """Raise a repair issue; fixable when it carries data for a fix flow (repairs.py)."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=data is not None,
        data=data,
        severity=severity,
        translation_key=key,
        translation_placeholders=dict(placeholders),
    )


def payload_bytes(msg: mqtt.ReceiveMessage) -> bytes:
    """Return an MQTT message's payload as bytes (subscriptions made with encoding=None)."""
    payload = msg.payload
    return payload.encode() if isinstance(payload, str) else bytes(payload)


class WarnOnce:
    """Warnings logged once per key, for at most MAX_WARNED keys (hostile input is endless)."""

    def __init__(self) -> None:
        """Nothing warned yet."""
        self._warned: set[str] = set()

    def __call__(self, key: str, message: str, *args: object) -> None:
        """Log `message % args` as a warning unless `key` was warned about."""
        if key not in self._warned and len(self._warned) < MAX_WARNED:
            self._warned.add(key)
            LOGGER.warning(message, *args)
