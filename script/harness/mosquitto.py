"""A real mosquitto broker on loopback: a plain and a TLS listener, password auth."""

from __future__ import annotations

import getpass
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .certs import Certs
from .procs import free_port, port_open, stop, wait_for

HOST = "127.0.0.1"


def mosquitto_binary() -> str:
    """Return the broker's path; Debian installs it in /usr/sbin."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("mosquitto is not installed: run script/bootstrap")
    return found


@dataclass
class Broker:
    """One mosquitto process; restart keeps its ports, users and certificates."""

    directory: Path
    certs: Certs
    username: str = "smartserver"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    extra_config: str = ""
    # messages queued per client beyond those in flight; above it mosquitto drops them.
    # 0 (unlimited) by default here; mosquitto's own default is 1000.
    max_queued_messages: int = 0
    host: str = HOST
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.users[self.username] = self.password
        self._write_passwords()
        (self.directory / "mosquitto.conf").write_text(self._config())

    @property
    def log(self) -> str:
        """What the broker has logged so far."""
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _config(self) -> str:
        d = self.directory
        return f"""\
per_listener_settings false
allow_anonymous false
password_file {d}/passwd
user {getpass.getuser()}
persistence false
log_dest file {d}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
max_queued_messages {self.max_queued_messages}
listener {self.port} {self.host}
listener {self.tls_port} {self.host}
cafile {self.certs.ca}
certfile {self.certs.server_cert}
keyfile {self.certs.server_key}
{self.extra_config}
"""

    def _write_passwords(self) -> None:
        path = self.directory / "passwd"
        path.write_text("")
        for user, password in self.users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(path), user, password], check=True, capture_output=True
            )
        path.chmod(0o600)

    def add_user(self, username: str, password: str) -> None:
        """Add a user; a running broker rereads its password file on SIGHUP."""
        self.users[username] = password
        self._write_passwords()
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(1)

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        """The broker's PID."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the broker and wait until both listeners accept connections."""
        assert not self.running, "broker already running"
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log}")
            return port_open(self.port) and port_open(self.tls_port)

        wait_for(ready, 10, "mosquitto to listen")

    def stop(self) -> None:
        """Stop the broker by PID."""
        stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()
