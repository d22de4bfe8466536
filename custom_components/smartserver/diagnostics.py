"""Diagnostics of the hub entry and of node devices; secrets and log text redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from .const import CONF_STORAGE
from .coordinator import SmartServerConfigEntry
from .helpers import node_id_of_device

# Log lines may carry anything a node printed (addresses, tokens); paths name the user.
TO_REDACT = {"last_message", "storage", CONF_STORAGE}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SmartServerConfigEntry
) -> dict[str, Any]:
    """Return the hub's options, every node's state and every server's state."""
    return {
        "entry_options": async_redact_data(dict(entry.options), TO_REDACT),
        "nodes": async_redact_data(entry.runtime_data.nodes.diagnostics(), TO_REDACT),
        **entry.runtime_data.servers.diagnostics(),
    }


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: SmartServerConfigEntry, device: dr.DeviceEntry
) -> dict[str, Any]:
    """Return one node's state."""
    nodes = entry.runtime_data.nodes.registry.nodes
    if (node_id := node_id_of_device(device)) is None or (node := nodes.get(node_id)) is None:
        return {}
    return {"node_id": node_id, **async_redact_data(node.diagnostics(), TO_REDACT)}
