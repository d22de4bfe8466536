"""Log ingest: queued lines to the files, the last line and counters to the model, events to HA."""

from __future__ import annotations

import asyncio
import time

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import DOMAIN, EVENT_LOG
from .log_writer import LogWriter
from .logs import LogLine
from .node_model import CRITICAL_RANK, LEVEL_RANK, MAX_HA_TEXT, UNKNOWN_RANK, Node
from .node_registry import NodeRegistry
from .node_states import NodeStates


class LogIngest:
    """Each line as it arrives: to the writer, node state, rate-limited events."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        registry: NodeRegistry,
        states: NodeStates,
        writer: LogWriter,
        *,
        event_rank: int,
        rate: float,
    ) -> None:
        """Ingest for the entry; events from `event_rank` up, at most `rate` per node and second."""
        self.hass = hass
        self.entry_id = entry_id
        self.registry = registry
        self.states = states
        self.writer = writer
        self.event_rank = event_rank
        self.rate = rate
        self._writing: asyncio.Task[None] | None = None

    def event_signal(self, node_id: str) -> str:
        """Dispatcher signal: the node logged a line that becomes an event."""
        return f"{DOMAIN}_{self.entry_id}_log_{node_id}"

    @callback
    def async_line(self, node_id: str, level: str, message: str, received: float) -> None:
        """Take a line of a valid id: its event (rate-limited), the writer, the node's state.

        Handled at once: HA's MQTT client hands over one message per event-loop turn, so
        gathering the lines of a turn saved nothing and cost a loop callback per line.
        """
        if (node := self.registry.log_source(node_id)) is None:
            # held back: its lines still reach the general log
            self._write((received, level, node_id, message, False))
            return
        text = message[:MAX_HA_TEXT]
        node.logged(level, text, received)
        now = time.monotonic()
        if (rank := LEVEL_RANK.get(level, UNKNOWN_RANK)) >= self.event_rank:
            bucket = node.critical_events if rank >= CRITICAL_RANK else node.events
            if bucket.take(now, self.rate, self.rate):
                self._fire(node, level, text)
            else:
                node.suppressed += 1
        self._write((received, level, node_id, message, True))
        node.seen = now
        self.states.async_changed(node)

    @callback
    def _fire(self, node: Node, level: str, text: str) -> None:
        self.hass.bus.async_fire(
            EVENT_LOG,
            {
                "node": node.node_id,
                "name": node.name,
                "level": level,
                "message": text,
                "device_id": node.device_id,
            },
        )
        async_dispatcher_send(self.hass, self.event_signal(node.node_id), level, text)

    @callback
    def _write(self, line: LogLine) -> None:
        self.writer.add(line)
        if (self._writing is None or self._writing.done()) and not self.writer.closing:
            # from the next loop turn: the first batch takes every line of this one
            self._writing = self.hass.async_create_background_task(
                self._drain(), "smartserver log writer", eager_start=False
            )

    async def _drain(self) -> None:
        async for names in self.writer.async_drain():
            self.registry.async_rename(names)

    async def async_close(self) -> None:
        """Write what is queued (one last try for failed lines), then close the files."""
        self.writer.closing = True
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)
        if self.writer.queued:
            await self._drain()
        await self.writer.async_close()

    def diagnostics(self) -> dict[str, int | bool]:
        """Return what the writer did."""
        return {
            "lines_written": self.writer.written,
            "lines_dropped": self.writer.dropped,
            "lines_pending_retry": self.writer.pending,
            # the writer process could not start: Home Assistant's process writes the files
            "written_in_ha_process": self.writer.process.in_process,
        }
