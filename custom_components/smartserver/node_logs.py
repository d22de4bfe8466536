"""Log ingest: queued lines to the files, the last line and counters to the model, events to HA."""

from __future__ import annotations

import asyncio
import time

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import DOMAIN, EVENT_LOG
from .logs import LogLine, LogWriter
from .node_model import CRITICAL_RANK, LEVEL_RANK, MAX_HA_TEXT, UNKNOWN_RANK, Node
from .node_registry import NodeRegistry
from .node_states import NodeStates


class LogIngest:
    """The lines of one event-loop turn, handled together: files, node state, rate-limited events."""

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
        # (node id, level, message, received) of this event-loop turn
        self._queue: list[tuple[str, str, str, float]] = []
        self._writing: asyncio.Task[None] | None = None

    def event_signal(self, node_id: str) -> str:
        """Dispatcher signal: the node logged a line that becomes an event."""
        return f"{DOMAIN}_{self.entry_id}_log_{node_id}"

    @callback
    def async_queue(self, node_id: str, level: str, message: str, received: float) -> None:
        """Queue a line of a valid id; the queue is handled once per event-loop turn."""
        queue = self._queue
        queue.append((node_id, level, message, received))
        if len(queue) == 1:
            self.hass.loop.call_soon(self.async_process)

    @callback
    def async_process(self) -> None:
        """Every queued line to the writer; node states and events (rate-limited)."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        lines: list[LogLine] = []
        changed: dict[str, Node] = {}
        now = time.monotonic()
        for node_id, level, message, received in batch:
            if (node := changed.get(node_id)) is None:
                if (found := self.registry.log_source(node_id)) is None:
                    # held back: its lines still reach the general log
                    lines.append(LogLine(received, level, node_id, message, own_log=False))
                    continue
                node = changed[node_id] = found
            lines.append(LogLine(received, level, node_id, message))
            text = message[:MAX_HA_TEXT]
            node.logged(level, text, received)
            if (rank := LEVEL_RANK.get(level, UNKNOWN_RANK)) >= self.event_rank:
                bucket = node.critical_events if rank >= CRITICAL_RANK else node.events
                if bucket.take(now, self.rate, self.rate):
                    self._fire(node, level, text)
                else:
                    node.suppressed += 1
        self._write(lines)
        for node in changed.values():
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
    def _write(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        self.writer.add_many(lines)
        if (self._writing is None or self._writing.done()) and not self.writer.closing:
            self._writing = self.hass.async_create_background_task(self._drain(), "smartserver log writer")

    async def _drain(self) -> None:
        async for names in self.writer.async_drain():
            self.registry.async_rename(names)

    async def async_close(self) -> None:
        """Write what is queued (one last try for failed lines), then close the files."""
        self.async_process()
        self.writer.closing = True
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)
        if self.writer.queued:
            await self._drain()
        await self.writer.async_close()

    def diagnostics(self) -> dict[str, int]:
        """Return what the writer did."""
        return {
            "lines_written": self.writer.written,
            "lines_dropped": self.writer.dropped,
            "lines_pending_retry": self.writer.files.pending,
        }
