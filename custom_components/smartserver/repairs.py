"""Repair flows: a server still powered after its shutdown can be forced off from the issue."""

from __future__ import annotations

from typing import Any

import probatio as vol
from homeassistant.components.repairs import RepairsFlow, RepairsFlowResult
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from .servers import Server, ServerHub


class ForceOffRepairFlow(RepairsFlow):
    """Confirm, then hold the server's power button (signed HOLD)."""

    def __init__(self, entry_id: str, subentry_id: str) -> None:
        """Remember which server the issue is about."""
        self._entry_id = entry_id
        self._subentry_id = subentry_id

    def _server(self) -> Server | None:
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return None
        hub: ServerHub = entry.runtime_data.servers
        return hub.servers.get(self._subentry_id)

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Go to the confirmation."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Ask before cutting the power; then send HOLD through the relay node."""
        if (server := self._server()) is None:
            return self.async_abort(reason="server_gone")
        if user_input is not None:
            try:
                await server.async_force_off()
            except HomeAssistantError as err:
                return self.async_abort(
                    reason="force_off_failed", description_placeholders={"error": str(err)}
                )
            return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            # the issue's own text is this step's description: the same placeholders
            description_placeholders={
                "name": server.config.name,
                "relay_node": server.config.relay_node or "",
                "grace": f"{server.config.stop_grace:g}",
            },
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None
) -> RepairsFlow:
    """Create the fix flow of a fixable server issue."""
    if not data or "entry_id" not in data or "subentry_id" not in data:
        raise ValueError(f"issue {issue_id} carries no server")
    return ForceOffRepairFlow(str(data["entry_id"]), str(data["subentry_id"]))
