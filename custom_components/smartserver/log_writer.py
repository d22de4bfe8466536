"""Log lines from the event loop to the log writer process, in batches.

The event loop only appends lines to a list; one task at a time hands the whole list
to the writer process (log_process.py), so a flood becomes a few large writes (one per
file and batch). While lines keep coming, a batch starts at most every BATCH_INTERVAL_S
(the first at once): fewer, larger hand-overs cost the loop less. Once they stop coming
for QUIET_S, what is queued goes at once: the last lines of a burst do not wait. A
batch that cannot be written (full disk, permissions, the process gone) is logged once
per failure streak and retried every RETRY_DELAY_S; nothing is dropped until a file's
retry store is full.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from .const import LOGGER
from .log_process import LogProcess, LogProcessError
from .log_tally import BatchTally, LogLine
from .logs import MAX_RETRY_LINES, WriteResult

RETRY_DELAY_S: Final = 2.0
# Shortest time from the start of one batch to the next while lines keep coming.
BATCH_INTERVAL_S: Final = 0.05
# Lines stopped coming for this long: what is queued goes without waiting out the interval.
QUIET_S: Final = 0.01


class LogWriter:
    """Collects lines in the event loop and has the writer process write them in batches.

    Whoever queues lines runs `async_drain` (one at a time): it hands over each batch's
    tally as soon as it is worked out, and yields each batch's result: the node names it
    found on disk, so devices follow renames in device_names.yaml.
    """

    def __init__(self, process: LogProcess) -> None:
        """Write through `process`."""
        self.process = process
        self._buffer: list[LogLine] = []
        self._tallied = 0  # the first lines of the buffer were tallied (a batch written again)
        self.closing = False  # no waiting between batches, no retry delay: unloading
        self._failing = False
        self.written = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Lines the process keeps for retry (a file could not be written)."""
        return self.process.pending

    @property
    def queued(self) -> bool:
        """Whether lines wait to be written (new or kept for retry)."""
        return bool(self._buffer or self.pending)

    def add(self, line: LogLine) -> None:
        """Queue a line (in the event loop)."""
        self._buffer.append(line)
        if len(self._buffer) > MAX_RETRY_LINES:
            self._overflow()

    def _overflow(self) -> None:
        # A batch that never comes back (a hung disk, a stopped process) must not let
        # HA's memory grow with every line: the oldest go, a tenth at a time, counted.
        excess = self._drop_oldest(MAX_RETRY_LINES * 9 // 10)
        self.dropped += excess
        LOGGER.error(
            "Dropped %s log lines: the log writer has not finished a batch while %s more came",
            excess,
            MAX_RETRY_LINES,
        )

    def _drop_oldest(self, keep: int) -> int:
        """Drop all but the newest `keep` queued lines; return how many went."""
        excess = max(0, len(self._buffer) - keep)
        del self._buffer[:excess]
        self._tallied = max(0, self._tallied - excess)
        return excess

    async def async_drain(
        self,
        held_back: Callable[[list[LogLine]], frozenset[str]],
        tallied: Callable[[BatchTally], None],
    ) -> AsyncIterator[WriteResult]:
        """Write batches until nothing is queued; yield each batch's result.

        `held_back` names the nodes of a batch whose lines go to the general log only;
        `tallied` gets each batch's tally, every line tallied once (also when written again).
        """
        started = -math.inf
        while self.queued:
            await self._gather(started)  # the first batch at once
            started = time.monotonic()
            batch, self._buffer = self._buffer, []
            result = await self._write(batch, held_back(batch), tallied)
            if result.dropped:
                self.dropped += result.dropped
                LOGGER.error("Dropped %s log lines that could not be written", result.dropped)
            yield result
            if result.errors:
                # once per failure streak: a full disk must not flood HA's log too
                LOGGER.log(
                    logging.DEBUG if self._failing else logging.ERROR,
                    "Could not write node logs (%s lines kept for retry): %s",
                    self.pending + len(self._buffer),
                    "; ".join(result.errors),
                )
                self._failing = True
                if self.closing:
                    return
                await asyncio.sleep(RETRY_DELAY_S)
            elif self._failing:
                self._failing = False
                LOGGER.warning("Node logs are written again; the lines kept for retry are written")

    async def _gather(self, started: float) -> None:
        """Let lines gather until the interval since `started` is over, or they stop coming."""
        while not self.closing and (wait := started + BATCH_INTERVAL_S - time.monotonic()) > 0:
            count = len(self._buffer)
            await asyncio.sleep(min(wait, QUIET_S))
            if len(self._buffer) == count:
                return

    async def _write(
        self, batch: list[LogLine], held_back: frozenset[str], tallied: Callable[[BatchTally], None]
    ) -> WriteResult:
        skip, self._tallied = self._tallied, 0
        done = False

        def take(tally: BatchTally) -> None:
            nonlocal done
            done = True
            tallied(tally)

        try:
            result = await self.process.write(batch, held_back, tallied=take, skip=skip)
        except asyncio.CancelledError:
            self._requeue(batch, len(batch) if done else skip)  # counted as lost at unload
            raise
        except LogProcessError as err:
            # the batch waits for the next try, before the lines that came meanwhile
            self._requeue(batch, len(batch) if done else skip)
            excess = self._drop_oldest(MAX_RETRY_LINES)  # as a file's retry store drops them
            return WriteResult([str(err)], err.lost + excess)
        self.written += len(batch)
        return result

    def _requeue(self, batch: list[LogLine], tallied: int) -> None:
        """Put a batch back in front of the lines that came meanwhile; its first `tallied` were."""
        self._buffer[:0] = batch
        self._tallied = tallied

    async def async_close(self) -> None:
        """Stop the process; count the lines that could not be written (call after the last drain)."""
        if lost := self.pending + len(self._buffer):
            LOGGER.error("Lost %s node log lines that could not be written before unloading", lost)
        self._buffer.clear()
        await self.process.close()
