"""Node storage on disk: client directories, device names and configurations.

Everything here blocks on file I/O: call it from an executor job, never from the
event loop. Layout (SmartServer's, with `Clients/` still accepted):

    <root>/device_names.yaml            node id -> name (null: use the id)
    <root>/clients/<name>/config.json   served as-is (or config.hjson)
    <root>/clients/<name>/config/*.json one component per file (or *.hjson)
    <root>/clients/<name>/<name>.log    the node's log
    <root>/servers/<id>/<id>.log        a server agent's log (its server id)

Node ids and component names become file names through `file_name` (docs/nodes.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import hjson
import orjson
import yaml

from . import protocol

# libyaml's safe loader where PyYAML has it (as Home Assistant's own YAML): the file is
# parsed again for every new node, and the pure-Python one took 24 ms at 350 nodes.
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NAMES_FILE: Final = "device_names.yaml"
CLIENTS: Final = "clients"
SERVERS: Final = "servers"
LEGACY_CLIENTS: Final = "Clients"
SUFFIXES: Final = (".hjson", ".json")
ORDER: Final = "_order"
# Names become directory names: word characters, spaces, dots and dashes only.
NAME_PATTERN: Final = re.compile(r"\w[\w .-]{0,63}")
# Escaped as %XX in file names: `%` itself (so the mapping is reversible), what Windows
# and Samba shares refuse, and control characters. Everything else stays as it is.
ESCAPED: Final = frozenset('%\\:*?"<>|\x7f') | frozenset(map(chr, range(32)))
_ESCAPE: Final = re.compile(r"%([0-9A-F]{2})")


def file_name(name: str) -> str:
    """Return the file name of a valid node id or component name (its own name if plain)."""
    return "".join(f"%{ord(ch):02X}" if ch in ESCAPED else ch for ch in name)


def name_of_file(stem: str) -> str | None:
    """Return the name `file_name` maps to `stem`, or None if it makes no such file name."""
    name = _ESCAPE.sub(lambda match: chr(int(match[1], 16)), stem)
    return name if protocol.valid_name(name) and file_name(name) == stem else None


@dataclass(slots=True)
class ConfigFileError(Exception):
    """A file that does not parse: which one, where, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        """Readable for logs."""
        return f"{self.path}, line {self.line}: {self.reason}"


@dataclass(slots=True)
class NodeConfig:
    """A configuration as read from disk, ready to serve."""

    config: dict[str, Any]
    files: list[str]
    warnings: list[str] = field(default_factory=list)
    name: str = ""  # the node's directory name

    def components(self) -> list[tuple[str, Any]]:
        """Components in `_order` order, for a chunked answer."""
        order = self.config.get(ORDER)
        if not isinstance(order, list):
            order = [key for key in self.config if key != ORDER]
        return [(str(name), self.config[name]) for name in order if name in self.config]


def _decode(raw: bytes, rel: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigFileError(rel, raw[: err.start].count(b"\n") + 1, "not UTF-8") from err


def parse_file(path: str | os.PathLike[str], rel: str) -> Any:
    """Parse a .json or .hjson file; raise ConfigFileError with the line if it fails.

    JSON goes through orjson; what orjson refuses is parsed again by the standard
    library, which accepts the same documents as before (integers beyond 64 bits,
    NaN) and gives its usual message and line for real errors.
    """
    with open(path, "rb") as file:
        raw = file.read()
    text = _decode(raw, rel)
    try:
        if os.fspath(path).endswith(".hjson"):
            return _plain(hjson.loads(text))
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)
    except ValueError as err:
        line = getattr(err, "lineno", 1)
        raise ConfigFileError(rel, line, str(getattr(err, "msg", err))) from err


def _plain(value: Any) -> Any:
    """Turn hjson's OrderedDicts into plain dicts (same order)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Storage:
    """The storage root; thread-safe, blocking."""

    def __init__(self, root: Path) -> None:
        """Use `root`; nothing is created until a node is seen."""
        self.root = root
        self._root_prefix = os.path.join(os.fspath(root), "")
        self._lock = threading.RLock()
        self._names: dict[str, str | None] = {}
        self._names_stamp: tuple[int, int] | None = None
        self.names_error: ConfigFileError | None = None
        self._dirs: dict[str, Path] = {}
        # Counts changes of the names or of a node's directory, so callers may cache paths.
        self.generation = 0

    @property
    def names_path(self) -> Path:
        """The device names file."""
        return self.root / NAMES_FILE

    def clients_dir(self) -> Path:
        """`clients/`, or SmartServer's `Clients/` when only that one exists."""
        path = self.root / CLIENTS
        legacy = self.root / LEGACY_CLIENTS
        if not path.is_dir() and legacy.is_dir():
            return legacy
        return path

    def rel(self, path: str | os.PathLike[str]) -> str:
        """Return a path relative to the root, for messages."""
        text, prefix = os.fspath(path), self._root_prefix
        return text[len(prefix) :] if text.startswith(prefix) else text

    # device_names.yaml -------------------------------------------------------

    def read_names(self) -> dict[str, str | None]:
        """Return the names map, re-read when the file changed; the last good one on errors."""
        with self._lock:
            try:
                stat = self.names_path.stat()
            except FileNotFoundError:
                if self._names_stamp is not None:
                    self.generation += 1
                self._names, self._names_stamp, self.names_error = {}, None, None
                return self._names
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._names_stamp:
                return self._names
            self._names_stamp = stamp
            self.generation += 1
            try:
                self._names = self._parse_names()
                self.names_error = None
            except ConfigFileError as err:
                self.names_error = err
            return self._names

    def _parse_names(self) -> dict[str, str | None]:
        text = _decode(self.names_path.read_bytes(), NAMES_FILE)
        try:
            data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            raise ConfigFileError(NAMES_FILE, line, str(getattr(err, "problem", err))) from err
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigFileError(NAMES_FILE, 1, "must map node ids to names")
        return {str(k): None if v is None else str(v) for k, v in data.items()}

    @staticmethod
    def _name_in(names: dict[str, str | None], node_id: str) -> str:
        name = names.get(node_id)
        own = file_name(node_id)
        if not name or name == node_id:
            return own
        if not NAME_PATTERN.fullmatch(name) or name in (CLIENTS, LEGACY_CLIENTS):
            return own
        if sum(1 for other in names.values() if other == name) > 1:
            return own
        if name in names and names[name] in (None, name):
            return own  # another node's id that keeps its directory (names have no `%`)
        return name

    @classmethod
    def _problem_in(cls, names: dict[str, str | None], node_id: str) -> str | None:
        name = names.get(node_id)
        if name and name != node_id and cls._name_in(names, node_id) == file_name(node_id):
            return f"name {name!r} for {node_id} in {NAMES_FILE} is not usable (invalid or not unique)"
        return None

    def _remember(self, node_id: str) -> None:
        """Add a new node to device_names.yaml (appended: the user's comments stay)."""
        if self.names_error is not None or node_id in self._names:
            return
        path = self.names_path
        self.root.mkdir(parents=True, exist_ok=True)
        prefix = ""
        if path.exists():
            raw = path.read_bytes()
            prefix = "\n" if raw and not raw.endswith(b"\n") else ""
        with path.open("a", encoding="utf-8") as file:
            file.write(prefix + yaml.safe_dump({node_id: None}, allow_unicode=True, width=1000))
        self.read_names()

    # client directories ------------------------------------------------------

    def known_ids(self) -> set[str]:
        """Ids in device_names.yaml or with a folder: nodes the new-node budget never holds back."""
        with self._lock:
            names = self.read_names()
            try:
                with os.scandir(self.clients_dir()) as scan:
                    folders = {entry.name for entry in scan if entry.is_dir()}
            except FileNotFoundError:
                folders = set()
        # a renamed node's folder carries its name, not an id
        folders -= {self._name_in(names, node_id) for node_id in names}
        return set(names) | {name for folder in folders if (name := name_of_file(folder)) is not None}

    def node_dir(self, node_id: str) -> Path:
        """Return the node's directory, created or renamed to its current name as needed.

        The id must already be validated; this refuses any other on principle.
        """
        if not protocol.valid_name(node_id):
            raise ValueError(f"refused node id {node_id!r}")
        with self._lock, self._across_processes():
            names = self.read_names()
            if node_id not in names:
                self._remember(node_id)
                names = self._names
            name = self._name_in(names, node_id)
            known = self._dirs.get(node_id)
            if known is not None and known.name == name and os.path.isdir(known):
                return known
            clients = self.clients_dir()
            path = clients / name
            if not path.is_dir():
                old = clients / (known.name if known is not None else file_name(node_id))
                if old != path and old.is_dir():
                    self._rename(old, path)
                else:
                    (path / "config").mkdir(parents=True, exist_ok=True)
            self._dirs[node_id] = path
            self.generation += 1
            return path

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        """Hold the root's lock: HA and its log writer process both make and rename folders."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # no node seen yet
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def server_log(self, server_id: str) -> Path:
        """Return the log of a server's agent (named by its id, which never changes)."""
        if not protocol.valid_id(server_id):
            raise ValueError(f"refused server id {server_id!r}")
        return self.root / SERVERS / server_id / f"{server_id}.log"

    @staticmethod
    def _rename(old: Path, new: Path) -> None:
        old.rename(new)
        for log in sorted(new.glob(f"{old.name}.log*")):
            log.rename(new / (new.name + log.name[len(old.name) :]))

    # configurations -------------------------------------------------------------

    def load_config(self, node_id: str) -> NodeConfig:
        """Read a node's configuration fresh from disk; raise ConfigFileError if broken."""
        with self._lock:
            directory = self.node_dir(node_id)
            if self.names_error is not None:
                raise self.names_error
            names = self._names
        warnings: list[str] = []
        if problem := self._problem_in(names, node_id):
            warnings.append(problem)
        folder = os.fspath(directory)
        with os.scandir(folder) as scan:
            entries = {entry.name: entry for entry in scan}
        present = [entries[f"config{suffix}"] for suffix in SUFFIXES if f"config{suffix}" in entries]
        present = [entry for entry in present if entry.is_file()]
        if present:
            if len(present) > 1:
                warnings.append(f"{self.rel(present[1].path)} ignored: {self.rel(present[0].path)} is used")
            rel = self.rel(present[0].path)
            config = parse_file(present[0].path, rel)
            if not isinstance(config, dict):
                raise ConfigFileError(rel, 1, "must be an object")
            return NodeConfig(config, [rel], warnings, directory.name)
        loaded = self._load_components(os.path.join(folder, "config"), warnings, entries.get("config"))
        loaded.name = directory.name
        return loaded

    def _load_components(
        self, folder: str, warnings: list[str], found: os.DirEntry[str] | None
    ) -> NodeConfig:
        chosen: dict[str, tuple[str, str]] = {}  # name -> (path, path relative to the root)
        entries: list[os.DirEntry[str]] = []
        if found is not None and found.is_dir():
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        rel_folder = self.rel(folder)
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}"
            stem, suffix = os.path.splitext(entry.name)
            if entry.is_dir():
                warnings.append(f"{rel}/ ignored: subdirectories are not read")
            elif suffix not in SUFFIXES:
                warnings.append(f"{rel} ignored: not .json or .hjson")
            elif (name := name_of_file(stem)) is None:
                warnings.append(f"{rel} ignored: {stem!r} is not a usable component name")
            elif (other := chosen.get(name)) is not None:
                keep, drop = (
                    (other, (entry.path, rel)) if other[0].endswith(".hjson") else ((entry.path, rel), other)
                )
                warnings.append(f"{drop[1]} ignored: {keep[1]} is used")
                chosen[name] = keep
            else:
                chosen[name] = (entry.path, rel)
        config: dict[str, Any] = {}
        for stem, (path, rel) in chosen.items():
            value = parse_file(path, rel)
            if stem == ORDER:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigFileError(rel, 1, "must be a list of component names")
            elif not isinstance(value, dict):
                raise ConfigFileError(rel, 1, "a component must be an object")
            config[stem] = value
        order = config.pop(ORDER, None)
        if order is None:
            order = list(config)
        else:
            if missing := [name for name in order if name not in config]:
                warnings.append(f"{ORDER} names components without a file: {', '.join(missing)}")
            if unlisted := [name for name in config if name not in order]:
                warnings.append(f"components not in {ORDER} are not built: {', '.join(unlisted)}")
        config[ORDER] = order
        return NodeConfig(config, [rel for _path, rel in chosen.values()], warnings)
