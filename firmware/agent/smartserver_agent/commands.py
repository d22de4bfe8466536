"""Verification of signed commands: HMAC-SHA256 bound to this server, fresh, unreplayed."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from .protocol import MAX_SKEW_S

MAX_PAYLOAD = 1024
# a command is one flat object; json.loads recurses per level, and deep nesting
# (1,000 "[" fit in MAX_PAYLOAD) raises RecursionError instead of ValueError
MAX_DEPTH = 4


class CommandError(ValueError):
    """Why a command was refused."""


@dataclass(frozen=True, slots=True)
class Command:
    """A command that passed every check."""

    cmd: str
    ts: int
    nonce: str
    arg: str = ""


def command_signature(key: str, target: str, cmd: str, ts: int, nonce: str, arg: str = "") -> str:
    """Return the hex HMAC-SHA256 under `key` of target, cmd, ts, nonce, arg (newline-joined)."""
    text = "\n".join((target, cmd, str(ts), nonce, arg)).encode()
    return hmac.new(key.encode(), text, hashlib.sha256).hexdigest()


def _depth(payload: bytes) -> int:
    """Return the deepest nesting of arrays and objects, skipping strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in payload.decode(errors="replace"):
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _fields(payload: bytes) -> tuple[str, int, str, str, str]:
    """Return cmd, ts, nonce, arg and sig of a payload, or raise CommandError."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"too large ({len(payload)} bytes)")
    if _depth(payload) > MAX_DEPTH:
        raise CommandError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(payload)
    except ValueError as err:
        raise CommandError("not JSON") from err
    if not isinstance(data, dict):
        raise CommandError("not a JSON object")
    cmd, ts, nonce, sig = data.get("cmd"), data.get("ts"), data.get("nonce"), data.get("sig")
    arg = data.get("arg", "")
    if not isinstance(sig, str) or not sig:
        raise CommandError("unsigned")
    if not (isinstance(cmd, str) and isinstance(nonce, str) and isinstance(arg, str)):
        raise CommandError("malformed")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise CommandError("malformed timestamp")
    return cmd, ts, nonce, arg, sig


@dataclass
class Verifier:
    """Checks commands for one server and remembers the nonces it accepted.

    `floor`: commands signed at or before it are refused (the replay record was lost).
    """

    key: str
    server_id: str
    max_skew: float = MAX_SKEW_S
    seen: dict[str, float] = field(default_factory=dict)
    floor: float = 0.0

    def verify(self, payload: bytes, now: float) -> Command:
        """Return the command, or raise CommandError naming why it is refused."""
        cmd, ts, nonce, arg, sig = _fields(payload)
        expected = command_signature(self.key, self.server_id, cmd, ts, nonce, arg)
        if not hmac.compare_digest(expected, sig):
            raise CommandError("bad signature")
        if abs(now - ts) > self.max_skew:
            raise CommandError(f"stale (ts {ts} is {now - ts:+.0f} s from this clock)")
        if ts <= self.floor:
            raise CommandError(
                f"unverifiable: signed at {ts}, not after {self.floor:.0f} (the replay record was unreadable)"
            )
        # a nonce older than the window is refused as stale anyway
        self.seen = {n: at for n, at in self.seen.items() if now - at <= 2 * self.max_skew}
        if nonce in self.seen:
            raise CommandError("replayed")
        self.seen[nonce] = now
        return Command(cmd, ts, nonce, arg)

    def forget(self, nonce: str) -> None:
        """Drop a nonce whose command was not carried out after all."""
        self.seen.pop(nonce, None)
