"""The node log files are written by a child process, so HA's interpreter lock stays with the event loop.

Formatting and appending a flood's lines in an executor thread shared HA's interpreter
lock with the event loop: each of the loop's socket reads could hand it to the writer,
and the loop then waited for it back (docs/performance.md has the figures). The child
runs `LogFiles` with its own interpreter, and the batches' tally (log_tally.py: the last
lines, counters and events HA applies). Each batch goes to its stdin as one marshal blob
behind a 4-byte length; it answers each with two JSON lines: the tally at once, then,
once the lines are written, the batch's `WriteResult` and the lines it keeps for retry.

The child imports the integration's `logs` and `log_tally` modules and what they need
(storage, protocol, const, node_model), never Home Assistant, and stops when its stdin
closes (also when HA dies).
Where it cannot start at all (no interpreter at `sys.executable`, an install that does
not let it import the integration), the files are written in HA's process instead, in
an executor job: slower in a flood, but no line waits for a process that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from .const import LOGGER
from .log_tally import BatchTally, LogLine, LogTally, NodeTally
from .logs import LogFiles, WriteResult
from .storage import Storage

HEADER: Final = struct.Struct("<I")
# Writing logs yields the CPU to HA and the broker (often on the same host) in a flood.
NICE: Final = 10
# The longest answer line: the node names of a batch (about 100 bytes each).
ANSWER_LIMIT: Final = 1 << 24
# Unload waits this long for the child to close its files before it is killed.
STOP_TIMEOUT_S: Final = 10.0
# A child that has not said "ready" by then (a hung import, a stalled disk) never will.
START_TIMEOUT_S: Final = 30.0
# The child imports this module as part of a package of this directory without running
# its __init__ (which imports Home Assistant).
_PACKAGE: Final = "smartserver_log_process"
_CHILD: Final = (
    "import json, os, sys, types\n"
    f"try:\n    os.nice({NICE})\nexcept OSError:  # not allowed here: at HA's priority\n    pass\n"
    "sys.path[:] = json.loads(sys.argv[1])['path']  # as HA's (its deps may be elsewhere)\n"
    f"package = types.ModuleType({_PACKAGE!r})\n"
    f"package.__path__ = [{os.path.dirname(os.path.abspath(__file__))!r}]\n"
    f"sys.modules[{_PACKAGE!r}] = package\n"
    f"from {_PACKAGE}.log_process import child\n"
    "child()\n"
)


class LogProcessError(Exception):
    """The child could not start, or it is gone; `lost`: the lines it kept for retry.

    Only a child that is gone reaches `write`'s caller: one that cannot start is replaced
    by writing in HA's process.
    """

    def __init__(self, reason: str, lost: int = 0) -> None:
        """Why, and how many lines went with the child."""
        super().__init__(reason)
        self.lost = lost


class LogProcess:
    """The child that writes the log files; started on the first batch, again after it died."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        backups: int,
        tz_name: str,
        servers: frozenset[str],
        *,
        event_rank: int,
        rate: float,
    ) -> None:
        """Write under `root` as `LogFiles` does with these settings (`tz_name`: an IANA zone).

        The tally fires events from `event_rank` up, at most `rate` per node and second.
        """
        self.settings = {
            "root": os.fspath(root),
            "max_bytes": max_bytes,
            "backups": backups,
            "tz": tz_name,
            "servers": sorted(servers),
            "event_rank": event_rank,
            "rate": rate,
            "path": [p for p in sys.path if isinstance(p, str)],
        }
        self._process: asyncio.subprocess.Process | None = None
        self.pending = 0  # lines the child keeps for retry (its last answer)
        # where the files are written in HA's process, lines are tallied in the event loop
        self._tally = LogTally(event_rank, rate)
        # Written in HA's process (in an executor job) since the child could not start.
        self._here: LogFiles | None = None
        self._job: asyncio.Future[WriteResult] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return None if self._process is None else self._process.pid

    @property
    def in_process(self) -> bool:
        """Whether the files are written in HA's process (the child could not start)."""
        return self._here is not None

    async def write(
        self,
        lines: list[LogLine],
        held_back: frozenset[str] = frozenset(),
        *,
        tallied: Callable[[BatchTally], None] | None = None,
        skip: int = 0,
    ) -> WriteResult:
        """Have the child tally and append a batch; raise LogProcessError if it dies on the way.

        The lines of nodes in `held_back` go to the general log only and count for nothing.
        `tallied` gets the tally of the lines after the first `skip` (an earlier try tallied
        those) as soon as it is worked out, before the lines are written: a stalled disk
        holds back no event.
        """
        if self._here is None and self._process is None:
            try:
                await self._start()
            except LogProcessError as err:
                LOGGER.warning(
                    "The log writer process cannot be used (%s): node logs are written in"
                    " Home Assistant's process instead (slower in a flood)",
                    err,
                )
                self._here = await asyncio.get_running_loop().run_in_executor(None, log_files, self.settings)
        if self._here is not None:
            if tallied is not None:
                tallied(self._tally.add(lines, held_back, skip))
            return await self._write_here(self._here, lines, held_back)
        process = self._process
        assert process is not None
        data = marshal.dumps((lines, tuple(held_back), skip))
        tally = await self._answer(process, data)
        if tallied is not None:
            tallied(BatchTally({node: NodeTally(*v) for node, v in tally["nodes"].items()}, tally["events"]))
        result = await self._answer(process, None)
        self.pending = int(result["pending"])
        return WriteResult(list(result["errors"]), int(result["dropped"]), dict(result["names"]))

    async def _answer(self, process: asyncio.subprocess.Process, data: bytes | None) -> dict[str, Any]:
        """Send `data` (a batch) if given, and return the child's next answer line."""
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            if data is not None:
                process.stdin.write(HEADER.pack(len(data)))
                process.stdin.write(data)
                await process.stdin.drain()
            answer: dict[str, Any] = json.loads(await process.stdout.readline())
        except (OSError, ValueError) as err:
            raise await self._gone(f"the log writer process stopped ({type(err).__name__})") from err
        except asyncio.CancelledError:
            # its answer, still on the way, would be taken for the next batch's
            self._abandon()
            raise
        return answer

    async def _write_here(
        self, files: LogFiles, lines: list[LogLine], held_back: frozenset[str]
    ) -> WriteResult:
        await self._job_done()  # one job at a time, also after a cancelled write
        self._job = asyncio.get_running_loop().run_in_executor(None, files.write, lines, held_back)
        # shielded: a cancelled write leaves its job running, and the next one waits for it
        result = await asyncio.shield(self._job)
        self.pending = files.pending
        return result

    async def _job_done(self) -> None:
        if self._job is not None:
            await asyncio.wait([self._job])

    async def _start(self) -> asyncio.subprocess.Process:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-c",
                _CHILD,
                json.dumps(self.settings),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=ANSWER_LIMIT,
            )
        except OSError as err:
            raise LogProcessError(f"the log writer process did not start: {err}") from err
        self._process = process
        assert process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = await process.stdout.readline()
        except TimeoutError:
            raise await self._gone(
                f"the log writer process did not start within {START_TIMEOUT_S:g} s"
            ) from None
        except asyncio.CancelledError:
            self._abandon()
            raise
        if ready != b"ready\n":
            raise await self._gone("the log writer process did not start (see HA's output for why)")
        return process

    def _abandon(self) -> asyncio.subprocess.Process | None:
        """Kill the child without waiting (it is reaped when it exits); the next write starts a new one.

        Its `pending` lines stay counted until the next answer: lost, if unloading.
        """
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return process

    async def _gone(self, reason: str) -> LogProcessError:
        """Reap a child that stopped answering; the next write starts a new one."""
        lost, self.pending = self.pending, 0
        if (process := self._abandon()) is not None:
            await process.wait()
            reason = f"{reason}, exit status {process.returncode}"
        return LogProcessError(reason, lost)

    async def close(self) -> None:
        """Let the child close its files and stop (killed if it takes over STOP_TIMEOUT_S)."""
        if self._here is not None:
            await self._job_done()
            await asyncio.get_running_loop().run_in_executor(None, self._here.close)
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def log_files(settings: dict[str, Any]) -> LogFiles:
    """Return the log files of these settings (`LogProcess.settings`); blocking (time zone data)."""
    return LogFiles(
        Storage(Path(settings["root"])),
        settings["max_bytes"],
        settings["backups"],
        ZoneInfo(settings["tz"]),
        servers=frozenset(settings["servers"]),
    )


def child() -> None:
    """Run as the child: write each batch from stdin, answer on stdout, until stdin closes."""
    settings = json.loads(sys.argv[1])
    files = log_files(settings)
    tally = LogTally(settings["event_rank"], settings["rate"])
    source, answers = sys.stdin.buffer, sys.stdout
    answers.write("ready\n")
    answers.flush()
    try:
        while len(header := source.read(HEADER.size)) == HEADER.size:
            (size,) = HEADER.unpack(header)
            # from HA's own process only (its stdin), never from the network
            lines, held, skip = marshal.loads(source.read(size))  # noqa: S302
            held_back = frozenset(held)
            # the tally first: HA fires the batch's events while its lines are written
            batch = tally.add(lines, held_back, skip)
            nodes = {node: node_tally.as_list() for node, node_tally in batch.nodes.items()}
            answers.write(json.dumps({"nodes": nodes, "events": batch.events}) + "\n")
            answers.flush()
            result = files.write(lines, held_back)
            answer = {
                "names": result.names,
                "errors": result.errors,
                "dropped": result.dropped,
                "pending": files.pending,
            }
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        files.close()
