"""Logbook texts for SmartServer's events: a node's log line reads as a sentence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN, EVENT_LOG

# the logbook shows a line's start; the node's log file keeps it whole
MAX_MESSAGE = 200


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, Any]]], None],
) -> None:
    """Describe `smartserver_log`: '<name> logged critical: <message>'."""

    @callback
    def describe_log(event: Event) -> dict[str, Any]:
        data = event.data
        message = str(data.get("message", ""))
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        return {
            LOGBOOK_ENTRY_NAME: str(data.get("name") or data.get("node") or "SmartServer"),
            LOGBOOK_ENTRY_MESSAGE: f"logged {data.get('level', 'a line')}: {message}",
        }

    async_describe_event(DOMAIN, EVENT_LOG, describe_log)
