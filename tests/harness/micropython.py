"""MicroPython's unix port (Debian trixie's build in a private root, see bootstrap)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def micropython_binary() -> Path:
    """Return the MicroPython binary that script/bootstrap unpacked."""
    configured = os.environ.get("SMARTSERVER_MICROPYTHON")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smartserver"
    path = Path(configured) if configured else cache / "micropython/usr/bin/micropython"
    if not path.is_file():
        raise RuntimeError(f"MicroPython not found at {path}: run script/bootstrap")
    return path


@dataclass(frozen=True)
class MicroPython:
    """Runs scripts on the unix port, under an ESP32-like heap limit by default."""

    binary: Path
    heapsize: str = "100K"

    def command(self, script: Path, *args: str, heapsize: str | None = None) -> list[str]:
        """The command line that runs `script` with `args`."""
        return [str(self.binary), "-X", f"heapsize={heapsize or self.heapsize}", str(script), *args]

    def run(
        self,
        script: Path,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        heapsize: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a script to its end and return its output."""
        return subprocess.run(
            self.command(script, *args, heapsize=heapsize),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(
        self,
        script: Path,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        heapsize: str | None = None,
    ) -> subprocess.Popen[str]:
        """Start a script in the background; stop it with harness.procs.stop."""
        return subprocess.Popen(
            self.command(script, *args, heapsize=heapsize),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
