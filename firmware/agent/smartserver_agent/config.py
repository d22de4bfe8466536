"""Settings from environment variables and an optional env file, validated up front."""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .protocol import DEFAULT_BASE, ID_PATTERN, MAX_SKEW_S, base_problem

PREFIX = "SMARTSERVER_"
ENV_FILE = "SMARTSERVER_ENV_FILE"
DEFAULT_PORT = 8883
DEFAULT_TARGET = "1.1.1.1:53"
CA_FILE = "ca.pem"
MIN_KEY_LENGTH = 16
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")

# name -> what it is, for `check` and the error messages
SETTINGS = {
    "SMARTSERVER_BROKER_HOST": "MQTT broker host name or address (required)",
    "SMARTSERVER_BROKER_PORT": f"MQTT broker TLS port (default {DEFAULT_PORT})",
    "SMARTSERVER_USERNAME": "MQTT user name",
    "SMARTSERVER_PASSWORD": "MQTT password",
    "SMARTSERVER_CA": "CA certificate: a file path or the PEM text (default: system trust store)",
    "SMARTSERVER_TLS_INSECURE": "1 turns TLS certificate verification off (not recommended)",
    "SMARTSERVER_SERVER_ID": "this server's id, as configured in Home Assistant (required)",
    "SMARTSERVER_BASE_TOPIC": f"MQTT base topic (default {DEFAULT_BASE})",
    "SMARTSERVER_KEY": "the server's command key from Home Assistant (required)",
    "SMARTSERVER_HEARTBEAT": "seconds between ALIVE heartbeats (default 30)",
    "SMARTSERVER_NETWORK_INTERVAL": "seconds between network checks (default 300)",
    "SMARTSERVER_TARGET": f"host:port that must accept TCP connections (default {DEFAULT_TARGET})",
    "SMARTSERVER_INTERFACES": "comma-separated interfaces to check (default: every physical one)",
    "SMARTSERVER_MAX_SKEW": f"seconds a command's time may differ from this clock (default {MAX_SKEW_S})",
    "SMARTSERVER_DATA_DIR": "where the agent keeps its files (default $STATE_DIRECTORY)",
    "SMARTSERVER_LOG_LEVEL": "debug, info, warning or error (default info)",
    ENV_FILE: "a file of KEY=VALUE lines read before the environment",
}
FILE_SETTINGS = frozenset(SETTINGS) - {ENV_FILE}
LOG_LEVELS = ("debug", "info", "warning", "error")
# read by the project's node CLI (docs/management.md): may share a shell with the agent
OTHER_TOOLS = frozenset({"SMARTSERVER_MQTT_USER", "SMARTSERVER_MQTT_PASSWORD", "SMARTSERVER_NODE_KEY"})


class ConfigError(Exception):
    """The configuration has problems; each is named in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Target:
    """A TCP endpoint."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration."""

    host: str
    port: int
    username: str | None
    password: str | None
    ca_pem: str | None
    tls_insecure: bool
    server_id: str
    base: str
    key: str
    heartbeat: float
    network_interval: float
    target: Target
    interfaces: tuple[str, ...] | None
    max_skew: float
    data_dir: Path
    log_level: str

    @property
    def ca_path(self) -> Path | None:
        """Where the CA certificate is kept, if one is configured."""
        return self.data_dir / CA_FILE if self.ca_pem is not None else None

    @property
    def client_id(self) -> str:
        """Stable across restarts, so the broker replaces a stale session of ours."""
        return f"smartserver-agent-{self.server_id}"

    def summary(self) -> list[str]:
        """Describe the settings for a report; secrets are never shown."""
        ca = "system trust store" if self.ca_pem is None else str(self.ca_path)
        return [
            f"broker: {Target(self.host, self.port)} as {self.username or '(no user)'}",
            f"TLS: {'NOT VERIFIED (SMARTSERVER_TLS_INSECURE)' if self.tls_insecure else 'verified'}, CA {ca}",
            f"server id: {self.server_id}, base topic: {self.base}",
            f"heartbeat every {self.heartbeat:g} s, network check every {self.network_interval:g} s",
            f"reachability target: {self.target}",
            f"interfaces: {', '.join(self.interfaces) if self.interfaces else 'every physical one'}",
            f"command clock skew allowed: {self.max_skew:g} s",
            f"data directory: {self.data_dir}",
        ]


def read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """Parse KEY=VALUE lines (`export`, comments and quotes allowed); return values, problems."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        return {}, [f"{ENV_FILE}: cannot read {path}: {err}"]
    values: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            problems.append(f"{path} line {number}: expected KEY=VALUE")
            continue
        if name not in SETTINGS or name == ENV_FILE:
            problems.append(f"{path} line {number}: {unknown_setting(name, FILE_SETTINGS)}")
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values, problems


def unknown_setting(name: str, known: Collection[str] = SETTINGS) -> str:
    """Name an unknown setting, with the closest known one as a hint."""
    # compare without the prefix every name shares, or everything looks close
    suffixes = {known_name.removeprefix(PREFIX): known_name for known_name in known}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1, cutoff=0.7)
    return f"unknown setting {name}" + (f" (did you mean {suffixes[close[0]]}?)" if close else "")


T = TypeVar("T")


class _Reader:
    """Reads settings and collects every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name, "").strip()
        return value or default

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            self.problems.append(f"{name} is not set: {SETTINGS[name]}")
            return ""
        return value

    def parsed(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        value = self.text(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as err:
            self.problems.append(f"{name}={value!r}: {err}")
            return default

    def flag(self, name: str) -> bool:
        def parse(value: str) -> bool:
            if value.lower() in TRUE_WORDS:
                return True
            if value.lower() in FALSE_WORDS:
                return False
            raise ValueError("expected 1 or 0")

        return self.parsed(name, False, parse)


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number

    return parse


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return int(value)


def parse_target(value: str) -> Target:
    """Parse `host:port` or `[v6 address]:port`."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not host or (":" in host and not value.startswith("[")):
        raise ValueError("expected host:port (an IPv6 address in brackets: [::1]:53)")
    return Target(host, _port(port))


def _interfaces(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if "/" in name or name in (".", "..") or len(name) > 15:
            raise ValueError(f"{name!r} is not an interface name")
    return names


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def _ca(reader: _Reader) -> str | None:
    """Return the CA as PEM text: the setting is either the text or a file path."""
    value = reader.text("SMARTSERVER_CA")
    if value is None:
        return None
    if "-----BEGIN" in value:
        pem = value.replace("\\n", "\n")  # PEM on one line of an env file
    else:
        try:
            pem = Path(value).read_text()
        except (OSError, UnicodeDecodeError) as err:
            reader.problems.append(f"SMARTSERVER_CA: cannot read the file {value}: {err}")
            return None
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as err:
        reader.problems.append(f"SMARTSERVER_CA: not a PEM CA certificate ({err})")
        return None
    return pem.strip() + "\n"


def _default_data_dir(env: Mapping[str, str]) -> str:
    if state := env.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return state.split(":")[0]
    state_home = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "/")) / ".local" / "state")
    return str(Path(state_home) / "smartserver-agent")


def load(env: Mapping[str, str] | None = None, env_file: Path | None = None) -> Config:
    """Read and validate every setting; raise ConfigError listing all problems.

    The process environment wins over the env file, as with systemd's EnvironmentFile.
    """
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    file_name = str(env_file) if env_file else env.get(ENV_FILE, "").strip()
    values: dict[str, str] = {}
    if file_name:
        values, problems = read_env_file(Path(file_name))
    # systemd's EnvironmentFile= hands the file over as variables: a typo there must
    # not silently fall back to a default either
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in SETTINGS and name not in OTHER_TOOLS:
            problems.append(f"environment: {unknown_setting(name)}")
    values.update({k: v for k, v in env.items() if k in SETTINGS})
    read = _Reader(values)
    read.problems = problems

    host = read.required("SMARTSERVER_BROKER_HOST")
    port = read.parsed("SMARTSERVER_BROKER_PORT", DEFAULT_PORT, _port)
    username = read.text("SMARTSERVER_USERNAME")
    password = read.text("SMARTSERVER_PASSWORD")
    if password and not username:
        read.problems.append("SMARTSERVER_PASSWORD is set without SMARTSERVER_USERNAME")
    ca_pem = _ca(read)
    insecure = read.flag("SMARTSERVER_TLS_INSECURE")
    server_id = read.required("SMARTSERVER_SERVER_ID")
    if server_id and not ID_PATTERN.fullmatch(server_id):
        read.problems.append(f"SMARTSERVER_SERVER_ID={server_id!r}: use 1 to 64 letters, digits, '_' or '-'")
    base = read.text("SMARTSERVER_BASE_TOPIC", DEFAULT_BASE) or DEFAULT_BASE
    if problem := base_problem(base):
        read.problems.append(f"SMARTSERVER_BASE_TOPIC={base!r}: {problem}")
    key = read.required("SMARTSERVER_KEY")
    if key and len(key) < MIN_KEY_LENGTH:
        read.problems.append(f"SMARTSERVER_KEY is shorter than {MIN_KEY_LENGTH} characters")
    heartbeat = read.parsed("SMARTSERVER_HEARTBEAT", 30.0, _number(1, 3600))
    network_interval = read.parsed("SMARTSERVER_NETWORK_INTERVAL", 300.0, _number(5, 86400))
    target = read.parsed("SMARTSERVER_TARGET", parse_target(DEFAULT_TARGET), parse_target)
    interfaces = read.parsed("SMARTSERVER_INTERFACES", None, _interfaces) or None
    max_skew = read.parsed("SMARTSERVER_MAX_SKEW", float(MAX_SKEW_S), _number(1, 3600))
    data_dir = Path(read.text("SMARTSERVER_DATA_DIR") or _default_data_dir(env))
    if not data_dir.is_absolute():
        read.problems.append(f"SMARTSERVER_DATA_DIR={str(data_dir)!r}: must be an absolute path")
    log_level = read.parsed("SMARTSERVER_LOG_LEVEL", "info", _log_level)

    if read.problems:
        raise ConfigError(read.problems)
    return Config(
        host=host,
        port=port,
        username=username,
        password=password,
        ca_pem=ca_pem,
        tls_insecure=insecure,
        server_id=server_id,
        base=base,
        key=key,
        heartbeat=heartbeat,
        network_interval=network_interval,
        target=target,
        interfaces=interfaces,
        max_skew=max_skew,
        data_dir=data_dir,
        log_level=log_level,
    )


def store_ca(config: Config) -> None:
    """Keep the CA in the data directory, readable by the agent's user only (0600)."""
    if config.ca_pem is None or config.ca_path is None:
        return
    try:
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = config.ca_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config.ca_pem)
        tmp.chmod(0o600)
        tmp.replace(config.ca_path)
    except OSError as err:
        raise ConfigError([f"cannot store the CA certificate in {config.data_dir}: {err}"]) from err


def tls_context(config: Config) -> ssl.SSLContext:
    """Return a client context: verified against the CA (or the system store) unless insecure."""
    context = ssl.create_default_context(cafile=str(config.ca_path) if config.ca_path else None)
    if config.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
