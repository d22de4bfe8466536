"""What a batch of log lines means for HA: each node's last line and counters, the events to fire.

Worked out beside the files, in the log writer's process (no Home Assistant imports): HA's
event loop only queues each line, and applies one summary per node and batch. Done per
line in the loop, this bookkeeping cost about a tenth of the loop's rate in a flood
(docs/performance.md, issue 14).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Final

from .node_model import CRITICAL_RANK, LEVEL_RANK, MAX_HA_TEXT, UNKNOWN_RANK, TokenBucket

# Rate-limit buckets kept for this many nodes at most (new ones are held back beyond the
# new-node budget, but a long-running HA may forget and meet many).
MAX_BUCKETS: Final = 4096

# A line's message as its MQTT payload came: bytes (decoded as UTF-8 by the writer, invalid
# bytes replaced) or text.
type Payload = str | bytes | bytearray
# One received line: (received, level, node, message). A plain tuple of strings and
# numbers: the garbage collector stops tracking it, so the lines waiting for the writer
# during a flood cost its collections nothing.
type LogLine = tuple[float, str, str, Payload]


def text_of(message: Payload) -> str:
    """Return a line's message as text; invalid UTF-8 replaced (U+FFFD), never dropped."""
    return message if isinstance(message, str) else message.decode("utf-8", "replace")


@dataclass(slots=True)
class NodeTally:
    """A node's lines in one batch: the last one and what they add."""

    level: str
    message: Payload
    received: float
    errors: int = 0
    criticals: int = 0
    suppressed: int = 0  # events the rate limit held back

    @property
    def text(self) -> str:
        """The last line's message as HA shows it (cut to MAX_HA_TEXT)."""
        return text_of(self.message)[:MAX_HA_TEXT]

    def as_list(self) -> list[str | float]:
        """Return the tally as JSON-ready values, in field order (the message as text)."""
        return [self.level, self.text, self.received, self.errors, self.criticals, self.suppressed]


@dataclass(slots=True)
class BatchTally:
    """A batch's tally per node id, and its events (node, level, text) in the lines' order."""

    nodes: dict[str, NodeTally] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)


class LogTally:
    """Counters and the event rate limit over the batches; used by one writer at a time.

    Events from `event_rank` up, at most `rate` per node and second (a burst of `rate`);
    critical lines have a budget of their own that a flood of lower levels cannot spend.
    The rate is judged by each line's receive time, so a batch's lines count when they came.
    """

    def __init__(self, event_rank: int, rate: float) -> None:
        """Events from `event_rank`, at most `rate` per node and second."""
        self.event_rank = event_rank
        self.rate = rate
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def add(self, lines: list[LogLine], held_back: frozenset[str], skip: int = 0) -> BatchTally:
        """Tally a batch but its first `skip` lines (tallied by an earlier try).

        The lines of nodes in `held_back` (not added yet) count for nothing.
        """
        batch = BatchTally()
        nodes, events = batch.nodes, batch.events
        event_rank, rate = self.event_rank, self.rate
        for received, level, node, message in itertools.islice(lines, skip, None):
            if node in held_back:
                continue
            if (tally := nodes.get(node)) is None:
                tally = nodes[node] = NodeTally(level, message, received)
            else:
                tally.level, tally.message, tally.received = level, message, received
            if level == "error":
                tally.errors += 1
            elif level == "critical":
                tally.criticals += 1
            if (rank := LEVEL_RANK.get(level, UNKNOWN_RANK)) >= event_rank:
                bucket = self._bucket(node, critical=rank >= CRITICAL_RANK)
                if bucket.take(received, rate, rate):
                    events.append((node, level, text_of(message)[:MAX_HA_TEXT]))
                else:
                    tally.suppressed += 1
        return batch

    def _bucket(self, node: str, *, critical: bool) -> TokenBucket:
        if (buckets := self._buckets.get(node)) is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()  # full buckets again: at worst a burst more
            buckets = self._buckets[node] = (TokenBucket(), TokenBucket())
        return buckets[critical]
