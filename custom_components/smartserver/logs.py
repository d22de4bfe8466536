"""Node log files: every line to the general log and the node's log, in batches.

Runs in the log writer's child process (log_process.py): no Home Assistant imports. A
write that fails (full disk, permissions) keeps its lines for the next batch.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import BinaryIO, Final

from . import protocol
from .log_tally import LogLine, text_of
from .storage import Storage

GENERAL_LOG: Final = "smartserver.log"
# Lines kept for retry per file while writes fail; beyond this the oldest are dropped.
MAX_RETRY_LINES: Final = 200_000
MAX_OPEN_FILES: Final = 64
# A node's log path is checked on disk (directory, name) at most this often, and at once
# when the storage reports a change (device_names.yaml, a directory made or renamed).
RECHECK_S: Final = 1.0


# `[time] [LEVEL]`: the known levels in capitals, others as given
LEVEL_TEXT: Final = {level: level.upper() for level in protocol.LEVELS}
_MILLIS: Final = tuple(f"{ms:03d}" for ms in range(1000))
_MESSAGE: Final = operator.itemgetter(3)


def escape(message: str) -> str:
    """Escape backslashes and line breaks so a node cannot forge extra lines."""
    return message.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def format_line(line: LogLine, tz: tzinfo, stamp: str | None = None) -> str:
    """`[time] [LEVEL] [node] message` with a newline; unknown levels as given."""
    received, level, node, message = line
    if stamp is None:
        stamp = datetime.fromtimestamp(received, tz).isoformat(sep=" ", timespec="milliseconds")
    return f"[{stamp}] [{LEVEL_TEXT.get(level, level)}] [{node}] {escape(text_of(message))}\n"


class Stamps:
    """`datetime.fromtimestamp(t, tz).isoformat(sep=" ", timespec="milliseconds")`, faster.

    The date, time and offset of a whole second are formatted once for all its lines.
    """

    def __init__(self, tz: tzinfo) -> None:
        """Format in `tz`."""
        self.tz = tz
        self._second: int | None = None
        self._head = self._tail = ""

    def __call__(self, received: float) -> str:
        """Return the stamp of `received` (seconds since the epoch)."""
        second = math.floor(received)
        micros = round((received - second) * 1_000_000)  # rounded as datetime rounds
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            whole = datetime.fromtimestamp(second, self.tz).isoformat(sep=" ")
            self._second, self._head, self._tail = second, whole[:19], whole[19:]
        return f"{self._head}.{_MILLIS[micros // 1000]}{self._tail}"


@dataclass(slots=True)
class WriteResult:
    """What one batch did."""

    errors: list[str] = field(default_factory=list)
    dropped: int = 0
    names: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class OpenLog:
    """An open log file and its size (kept here: no tell() per batch)."""

    file: BinaryIO
    size: int

    def is_at(self, path: Path) -> bool:
        """Whether this is still the file at `path` (not removed or moved away)."""
        try:
            return os.stat(path).st_ino == os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            return False


class LogFiles:
    """Rotating log files; used from one executor job at a time."""

    def __init__(
        self,
        storage: Storage,
        max_bytes: int,
        backups: int,
        tz: tzinfo,
        servers: frozenset[str] = frozenset(),
    ) -> None:
        """Write under `storage`, rotate at `max_bytes` keeping `backups` old files.

        Lines of the ids in `servers` (server agents) go to the server's log, not a node's.
        """
        self.storage = storage
        self.servers = servers
        self.max_bytes = max_bytes
        self.backups = backups
        self.tz = tz
        self._stamps = Stamps(tz)
        self._handles: dict[Path, OpenLog] = {}
        # Each node's current log path: a rename leaves the old one to be closed.
        self._paths: dict[str, Path] = {}
        self._dir_names: dict[str, str] = {}  # the name of each path's directory
        self._checked: dict[str, float] = {}  # when each node's path was last checked
        self._generation = -1
        # Formatted lines per node (None: the general log) whose write failed.
        self._retry: dict[str | None, list[str]] = {}

    @property
    def pending(self) -> int:
        """Lines waiting for a retry."""
        return sum(len(lines) for lines in self._retry.values())

    def write(self, lines: list[LogLine], held_back: frozenset[str] = frozenset()) -> WriteResult:
        """Append a batch (after the lines of earlier failed writes).

        The lines of nodes in `held_back` (not added yet) go to the general log only.
        """
        result = WriteResult()
        groups, self._retry = self._retry, {}
        self.storage.read_names()  # once per batch: a changed file bumps the generation
        if self.storage.generation != self._generation:
            self._generation = self.storage.generation
            self._checked.clear()
        now = time.monotonic()
        self._format(lines, held_back, groups)
        for node, texts in groups.items():
            try:
                if node is None:
                    path = self.storage.root / GENERAL_LOG
                elif node in self.servers:
                    path = self.storage.server_log(node)
                else:
                    path = self._node_log(node, result, now)
                self._append(path, texts)
            except OSError as err:
                self.close_quietly()
                result.errors.append(f"{node or GENERAL_LOG}: {err}")
                result.dropped += max(0, len(texts) - MAX_RETRY_LINES)
                self._retry[node] = texts[-MAX_RETRY_LINES:]
        return result

    def _format(
        self, lines: list[LogLine], held_back: frozenset[str], groups: dict[str | None, list[str]]
    ) -> None:
        """Add each line's text to the general log's group and its node's (as format_line)."""
        if not lines:
            return
        general = groups.setdefault(None, [])
        messages = list(map(text_of, map(_MESSAGE, lines)))
        joined = "".join(messages)  # one look for what must be escaped
        escaping = "\\" in joined or "\n" in joined or "\r" in joined
        stamps, levels = self._stamps, LEVEL_TEXT
        for (received, level, node, _payload), message in zip(lines, messages, strict=True):
            shown = escape(message) if escaping else message
            text = f"[{stamps(received)}] [{levels.get(level, level)}] [{node}] {shown}\n"
            general.append(text)
            if node not in held_back:
                if (group := groups.get(node)) is None:
                    group = groups[node] = []
                group.append(text)

    def _node_log(self, node: str, result: WriteResult, now: float) -> Path:
        old = self._paths.get(node)
        if old is not None and now - self._checked.get(node, -math.inf) < RECHECK_S:
            result.names[node] = self._dir_names[node]
            return old
        directory = self.storage.node_dir(node)
        result.names[node] = self._dir_names[node] = directory.name
        path = directory / f"{directory.name}.log"
        if old != path:
            if old is not None and (handle := self._handles.pop(old, None)) is not None:
                handle.file.close()
            self._paths[node] = path
        elif (handle := self._handles.get(path)) is not None and not handle.is_at(path):
            # removed or moved away by hand (or logrotate): start a new file at the path
            self._handles.pop(path).file.close()
        # the check may itself have made or renamed a directory: the next batch checks all
        self._checked[node] = now
        return path

    def _open(self, path: Path) -> OpenLog:
        handle = self._handles.pop(path, None)
        if handle is None:
            if len(self._handles) >= MAX_OPEN_FILES:
                self._handles.pop(next(iter(self._handles))).file.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("ab")
            handle = OpenLog(file, file.tell())
        self._handles[path] = handle  # most recently used last
        return handle

    def close_quietly(self) -> None:
        """Close every handle after an error so the next attempt reopens cleanly."""
        while self._handles:
            with contextlib.suppress(OSError):
                self._handles.popitem()[1].file.close()

    def _append(self, path: Path, texts: list[str]) -> None:
        handle = self._open(path)
        data = "".join(texts).encode("utf-8", "backslashreplace")
        if not self.max_bytes or handle.size + len(data) <= self.max_bytes:
            handle.file.write(data)  # the usual case: no rotation in this batch
            handle.file.flush()
            handle.size += len(data)
            return
        chunk: list[bytes] = []
        for text in texts:
            line = text.encode("utf-8", "backslashreplace")
            if handle.size and handle.size + len(line) > self.max_bytes:
                handle.file.write(b"".join(chunk))
                chunk = []
                handle = self._rotate(path)
            chunk.append(line)
            handle.size += len(line)
        handle.file.write(b"".join(chunk))
        handle.file.flush()

    def _rotate(self, path: Path) -> OpenLog:
        self._handles.pop(path).file.close()
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = path.with_name(f"{path.name}.{index}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{index + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
        else:
            path.unlink()
        return self._open(path)

    def close(self) -> None:
        """Close every file."""
        while self._handles:
            self._handles.popitem()[1].file.close()
