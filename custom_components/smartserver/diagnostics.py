"""Diagnostics of the hub entry; secrets are redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant

from .coordinator import SmartServerConfigEntry
from .servers import servers_diagnostics


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SmartServerConfigEntry
) -> dict[str, Any]:
    """Return the entry's options and each section's diagnostics."""
    return {
        "options": dict(entry.options),
        **servers_diagnostics(entry),
    }
