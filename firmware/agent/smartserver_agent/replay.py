"""The replay record: accepted commands' nonces, kept on disk across restarts.

Without it a restarted agent (systemd restarts it seconds after a crash) would accept
a captured command again while its timestamp is still within the clock skew. The
record is written (temp file, fsync, rename) before a command is acted on, and read at
start. A record that exists but cannot be read gives a floor instead: commands signed
at or before its modification time plus the skew then allowed are refused, which
covers every command it could have held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPLAY_FILE = "replay.json"
VERSION = 1

_LOGGER = logging.getLogger(__package__)


@dataclass
class ReplayState:
    """What replay protection needs: nonce -> when it was accepted, and a floor for `ts`."""

    seen: dict[str, float] = field(default_factory=dict)
    floor: float = 0.0


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _parse(data: Any) -> tuple[ReplayState, float]:
    """Return the state and the skew it was written under; raise ValueError if malformed."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("not a replay record of this version")
    nonces = data.get("nonces")
    if not isinstance(nonces, dict):
        raise ValueError("no nonces")
    seen = {str(nonce): _number(at) for nonce, at in nonces.items()}
    return ReplayState(seen, _number(data.get("floor"))), _number(data.get("max_skew"))


def load(path: Path, now: float, max_skew: float) -> ReplayState:
    """Read the record; a missing one is empty, an unreadable one gives a conservative floor."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return ReplayState()
    except OSError as err:
        return _unreadable(path, now, max_skew, f"cannot read it: {err}")
    try:
        state, written_skew = _parse(json.loads(text))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _unreadable(path, now, max_skew, str(err))
    state.seen = {n: at for n, at in state.seen.items() if now - at <= 2 * max_skew}
    if written_skew < max_skew:
        # pruned under a smaller skew: what it dropped may be fresh enough now
        state.floor = max(state.floor, _written(path, now) + written_skew)
    return state


def _written(path: Path, now: float) -> float:
    """When the record was last written (never later than now); now if unknown."""
    try:
        return min(path.stat().st_mtime, now)
    except OSError:
        return now


def _unreadable(path: Path, now: float, max_skew: float, why: str) -> ReplayState:
    floor = _written(path, now) + max_skew
    _LOGGER.error(
        "the replay record %s is unreadable (%s): refusing commands signed at or before %d "
        "(its time + SMARTSERVER_MAX_SKEW); it is rewritten at the next accepted command",
        path,
        why,
        floor,
    )
    return ReplayState({}, floor)


def save(path: Path, state: ReplayState, max_skew: float) -> None:
    """Write the record atomically (temp file, fsync, rename, fsync of the directory), mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"version": VERSION, "max_skew": max_skew, "floor": state.floor, "nonces": state.seen}
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(data).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state at one moment, numbered so that an older one never overwrites a newer one."""

    seq: int
    state: ReplayState


class Recorder:
    """Writes snapshots of the state from any thread, newest wins."""

    def __init__(self, path: Path, max_skew: float) -> None:
        self.path = path
        self.max_skew = max_skew
        self._lock = threading.Lock()
        self._issued = 0
        self._written = 0

    def snapshot(self, state: ReplayState) -> Snapshot:
        """Copy the state now (on the thread that changes it)."""
        self._issued += 1
        return Snapshot(self._issued, ReplayState(dict(state.seen), state.floor))

    def write(self, snapshot: Snapshot) -> None:
        """Write it unless a newer snapshot (which holds everything it does) is written already."""
        with self._lock:
            if snapshot.seq <= self._written:
                return
            save(self.path, snapshot.state, self.max_skew)
            self._written = snapshot.seq
