"""The real server agent as users run it: `python -m smartserver_agent` with env vars."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .mosquitto import Broker
from .procs import stop, wait_for
from .system_bus import SystemBus

AGENT_SOURCE = Path(__file__).parents[2] / "firmware" / "agent"
TEST_KEY = "k3y-for-tests-0123456789abcdef"


def agent_env(
    directory: Path,
    broker: Broker | None = None,
    bus: SystemBus | None = None,
    **settings: str | None,
) -> dict[str, str]:
    """A clean environment for the agent; `settings` override SMARTSERVER_<NAME>."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "PYTHONPATH": str(AGENT_SOURCE),
        "PYTHONUNBUFFERED": "1",
        "SMARTSERVER_SERVER_ID": "srv1",
        "SMARTSERVER_KEY": TEST_KEY,
        "SMARTSERVER_DATA_DIR": str(directory / "data"),
    }
    if broker is not None:
        env |= {
            "SMARTSERVER_BROKER_HOST": broker.host,
            "SMARTSERVER_BROKER_PORT": str(broker.tls_port),
            "SMARTSERVER_USERNAME": broker.username,
            "SMARTSERVER_PASSWORD": broker.password,
            "SMARTSERVER_CA": str(broker.certs.ca),
            # the reachability check must stay on loopback: the broker's port
            "SMARTSERVER_TARGET": f"{broker.host}:{broker.port}",
        }
    if bus is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    for name, value in settings.items():
        key = f"SMARTSERVER_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_agent(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the agent to completion (`check`, or a configuration it refuses)."""
    return subprocess.run(
        [sys.executable, "-m", "smartserver_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class AgentProcess:
    """A running agent; its stderr goes to a file the tests can wait on."""

    env: dict[str, str]
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "agent.log"

    def start(self) -> AgentProcess:
        """Start `python -m smartserver_agent`."""
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartserver_agent"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def output(self) -> str:
        """Everything the agent has written so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_output(self, text: str, count: int = 1, timeout: float = 20) -> None:
        """Wait until `text` appears `count` times in the agent's output."""
        wait_for(lambda: self.output.count(text) >= count, timeout, f"agent output {text!r}")

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, as systemd stops it; return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the broker must publish the Will."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop by PID if still running."""
        stop(self.proc)
