"""A private system-type D-Bus daemon hosting the fake logind."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import stop

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@dataclass
class SystemBus:
    """dbus-daemon plus fake login1; `address` goes into DBUS_SYSTEM_BUS_ADDRESS."""

    directory: Path
    address: str = ""
    daemon: subprocess.Popen[bytes] | None = None
    logind: subprocess.Popen[bytes] | None = None
    record: Path = field(init=False)
    control: Path = field(init=False)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.record = self.directory / "logind-calls.jsonl"
        self.control = self.directory / "logind-control.json"
        self.log_path = self.directory / "dbus-daemon.log"

    def start(self) -> None:
        """Start the daemon, then the fake logind, and wait until it owns its name."""
        config = self.directory / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.directory / "system_bus_socket"))
        # dbus-daemon started as root tries to raise its fd limit to 65536 and, where that
        # is not permitted (containers, CI), prints a harmless "AccessDenied: Failed to set
        # fd limit" line: its messages go to a log file, not to the terminal of script/develop
        with self.log_path.open("ab") as log:
            self.daemon = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.daemon.stdout is not None
        self.address = self.daemon.stdout.readline().decode().strip()
        if not self.address:
            raise RuntimeError(f"dbus-daemon did not print its address: {self.log_path.read_text()}")
        self.record.write_text("")
        self.set_control()
        self.logind = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("fake_logind.py")),
                f"--address={self.address}",
                f"--record={self.record}",
                f"--control={self.control}",
            ],
            stdout=subprocess.PIPE,
        )
        assert self.logind.stdout is not None
        if self.logind.stdout.readline().strip() != b"ready":
            raise RuntimeError("the fake logind did not start")

    def set_control(self, **control: Any) -> None:
        """Decide the fake logind's answers, e.g. can_power_off="challenge"."""
        self.control.write_text(json.dumps(control))

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """The calls the fake logind has received, oldest first."""
        lines = self.record.read_text().splitlines()
        calls = [json.loads(line) for line in lines if line]
        return [c for c in calls if method is None or c["method"] == method]

    def stop(self) -> None:
        """Stop the fake logind and the daemon by PID."""
        stop(self.logind)
        stop(self.daemon)
        for proc in (self.logind, self.daemon):
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
