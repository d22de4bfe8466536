"""MicroPython's unix port (Debian trixie's builds in private roots, see bootstrap).

The firmware tests run on the 32-bit i386 build by default: its objects are the size of
an ESP32's and its ticks wrap at 2^30 ms as on the board. SMARTSERVER_MP_PORT=64 runs
them on the 64-bit build instead. The 32-bit root also holds libfaketime: `clock_env`
starts a process with its own wall clock, as an ESP32's RTC after power-up.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

I386_LIB = "usr/lib/i386-linux-gnu"
POWER_UP = 946684800  # 2000-01-01 00:00:00 UTC: an ESP32's clock after power-up


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smartserver"


def micropython_binary() -> Path:
    """Return the 64-bit MicroPython binary that script/bootstrap unpacked."""
    configured = os.environ.get("SMARTSERVER_MICROPYTHON")
    path = Path(configured) if configured else _cache() / "micropython/usr/bin/micropython"
    if not path.is_file():
        raise RuntimeError(f"MicroPython not found at {path}: run script/bootstrap")
    return path


def micropython32_root() -> Path:
    """Return the private root of the 32-bit MicroPython (with libfaketime)."""
    configured = os.environ.get("SMARTSERVER_MICROPYTHON32_ROOT")
    root = Path(configured) if configured else _cache() / "micropython32"
    if not (root / "usr/bin/micropython").is_file():
        raise RuntimeError(f"32-bit MicroPython not found in {root}: run script/bootstrap")
    return root


def micropython_port() -> MicroPython:
    """The port the firmware tests use: 32-bit unless SMARTSERVER_MP_PORT=64."""
    if os.environ.get("SMARTSERVER_MP_PORT") == "64":
        return MicroPython(micropython_binary())
    return MicroPython.i386(micropython32_root())


@dataclass(frozen=True)
class MicroPython:
    """Runs scripts on the unix port, under an ESP32-like heap limit by default."""

    binary: Path
    heapsize: str = "100K"
    root: Path | None = None  # the 32-bit port's private root, started through its loader

    @classmethod
    def i386(cls, root: Path) -> MicroPython:
        """The 32-bit port in `root`."""
        return cls(root / "usr/bin/micropython", root=root)

    @property
    def bits(self) -> int:
        """Word size of the port."""
        return 32 if self.root else 64

    def command(self, script: Path, *args: str, heapsize: str | None = None) -> list[str]:
        """The command line that runs `script` with `args`."""
        loader: list[str] = []
        if self.root:
            lib = self.root / I386_LIB
            loader = [str(lib / "ld-linux.so.2"), "--library-path", str(lib)]
        return [*loader, str(self.binary), "-X", f"heapsize={self.heap(heapsize)}", str(script), *args]

    def heap(self, heapsize: str | None = None) -> str:
        """The -X heapsize for an ESP32-sized `heapsize`: the 64-bit port gets half as
        much again, as its objects and bytecode take up to twice the space."""
        size = heapsize or self.heapsize
        if self.root or not size.endswith("K"):
            return size
        return f"{int(size[:-1]) * 3 // 2}K"

    def clock_env(self, clock_file: Path, start: float | None = None) -> dict[str, str]:
        """Environment for a wall clock kept in `clock_file` (libfaketime's offset from the
        host's clock, in seconds), set to `start` (Unix time) unless the file exists. The
        firmware's machine.RTC shim moves it as NTP sets the board's clock. Monotonic time
        (ticks) stays real. Only the 32-bit root carries libfaketime."""
        if not self.root:
            raise RuntimeError("a faked clock needs the 32-bit port (its root holds libfaketime)")
        if start is not None and not clock_file.exists():
            clock_file.write_text(f"{int(start) - int(time.time()):+d}\n")  # not before `start`
        return {
            "LD_PRELOAD": str(self.root / I386_LIB / "faketime/libfaketime.so.1"),
            "FAKETIME_TIMESTAMP_FILE": str(clock_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "SHIM_CLOCK": str(clock_file),
            "TZ": "UTC",  # the RTC shim's mktime
        }

    def shifted_clocks_env(self, offset_file: Path) -> dict[str, str]:
        """Environment that shifts the wall clock by the seconds in `offset_file`, which a
        test may change while the port runs. Under libfaketime CLOCK_MONOTONIC follows the
        shifted wall clock, so ticks_ms is (shifted Unix ms) mod 2**30 on the 32-bit port:
        a test can put the ticks just before a wrap, and move days ahead in steps."""
        if not self.root:
            raise RuntimeError("a faked clock needs the 32-bit port (its root holds libfaketime)")
        return {
            "LD_PRELOAD": str(self.root / I386_LIB / "faketime/libfaketime.so.1"),
            "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_NO_CACHE": "1",
            "TZ": "UTC",
        }

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
