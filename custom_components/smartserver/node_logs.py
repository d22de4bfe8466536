"""Log ingest: lines queued for the writer process; its tally to the model, events to HA."""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import DOMAIN, EVENT_LOG
from .log_tally import BatchTally, LogLine, Payload
from .log_writer import LogWriter
from .node_model import Node
from .node_registry import NodeRegistry
from .node_states import NodeStates

_NODE: Final = operator.itemgetter(2)


class LogIngest:
    """Each line queued as it arrives; per batch: new nodes, their state, rate-limited events.

    The writer process works out what a batch means (log_tally.py): HA's event loop does
    nothing per line but queue it. A line's event fires once its batch is tallied, before
    its lines are written (within about BATCH_INTERVAL_S of the line in a flood, a
    millisecond or two otherwise).
    """

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        registry: NodeRegistry,
        states: NodeStates,
        writer: LogWriter,
    ) -> None:
        """Ingest for the entry; the writer's process applies the event level and rate limit."""
        self.hass = hass
        self.entry_id = entry_id
        self.registry = registry
        self.states = states
        self.writer = writer
        # the registry's own dicts, looked up for every line without a call
        self._nodes, self._servers = registry.nodes, registry.server_logs
        self._writing: asyncio.Task[None] | None = None

    def event_signal(self, node_id: str) -> str:
        """Dispatcher signal: the node logged a line that becomes an event."""
        return f"{DOMAIN}_{self.entry_id}_log_{node_id}"

    @callback
    def async_line(self, node_id: str, level: str, message: Payload, received: float) -> None:
        """Queue a line of a valid id (the payload as it came: the writer process decodes it).

        A new node is added at its first line (within the new-node budget): adding the
        new nodes of a whole batch at once held up the event loop for 400 ms in a flood
        of made-up ids.
        """
        if node_id not in self._nodes and node_id not in self._servers:
            self.registry.async_contact(node_id)
        self._write((received, level, node_id, message))

    @callback
    def _held_back(self, batch: list[LogLine]) -> frozenset[str]:
        """Return the nodes of a batch that are not added (held back, or removed since)."""
        log_node = self.registry.log_node
        return frozenset(node for node in dict.fromkeys(map(_NODE, batch)) if log_node(node) is None)

    @callback
    def _apply(self, tally: BatchTally) -> None:
        """Take a batch's tally: each node's last line and counters, then its events."""
        now = time.monotonic()
        for node_id, node_tally in tally.nodes.items():
            if (node := self.registry.log_node(node_id)) is not None:
                node.logged(
                    node_tally.level,
                    node_tally.text,
                    node_tally.received,
                    errors=node_tally.errors,
                    criticals=node_tally.criticals,
                    suppressed=node_tally.suppressed,
                )
                node.seen = now
                self.states.async_changed(node)
        for node_id, level, text in tally.events:
            if (node := self.registry.log_node(node_id)) is not None:
                self._fire(node, level, text)

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
        async for result in self.writer.async_drain(self._held_back, self._apply):
            self.registry.async_rename(result.names)

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
