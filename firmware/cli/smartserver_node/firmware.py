"""Node firmware from its sources (firmware/esp32): version, compiled modules, build, manifest.

Standard library only: script/deploy-firmware reads the version with it from the
repository, without installing smartserver-node.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Never part of an update: the rollback lives in main.py; the rest is the board's.
FIXED = ("boot.py", "main.py")


@dataclass(frozen=True)
class Firmware:
    """A firmware bundle: compiled modules with their version and build hash."""

    version: str
    build: str
    files: dict[str, bytes] = field(repr=False)

    @staticmethod
    def build_hash(files: dict[str, bytes]) -> str:
        """SHA-256 over `sha256sum`'s lines for the files, as script/deploy-firmware has it."""
        lines = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
        return hashlib.sha256(lines.encode()).hexdigest()[:12]

    def manifest(self) -> bytes:
        """Return the manifest the node checks the staged files against."""
        return json.dumps(
            {
                "version": self.version,
                "build": self.build,
                "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(self.files.items())},
            },
            sort_keys=True,
        ).encode()


def firmware_version(source: Path) -> str:
    """Return the VERSION that the firmware sources' version.py sets (read, not run)."""
    path = source / "version.py"
    for statement in ast.parse(path.read_text(), str(path)).body:
        if (
            isinstance(statement, ast.Assign)
            and [getattr(t, "id", None) for t in statement.targets] == ["VERSION"]
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        ):
            return statement.value.value
    raise ValueError(f'no VERSION = "..." in {path}')


def build_firmware(source: Path, mpy_cross: str = "mpy-cross") -> Firmware:
    """Compile the firmware sources (firmware/esp32) to .mpy like script/deploy-firmware."""
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as out:
        for path in sorted(source.glob("*.py")):
            if path.name in FIXED or path.name.endswith("_template.py"):
                continue
            target = Path(out) / f"{path.stem}.mpy"
            subprocess.run(
                [mpy_cross, "-s", path.name, "-o", str(target), str(path)],
                check=True,
                capture_output=True,
            )
            files[target.name] = target.read_bytes()
    return Firmware(firmware_version(source), Firmware.build_hash(files), files)


def main(argv: list[str] | None = None) -> int:
    """Print the version of the firmware sources in the folder given (script/deploy-firmware)."""
    args = sys.argv[1:] if argv is None else argv
    print(firmware_version(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
