"""script/release: the HACS zip carries the integration and the compiled node firmware."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from smartserver_node.firmware import firmware_version

from custom_components.smartserver.app_image import load_image
from custom_components.smartserver.mgmt import load_bundle
from tests.components.smartserver.update_common import app_image

ROOT = Path(__file__).parents[1]


def test_release_zip_has_the_integration_and_a_loadable_firmware(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "script" / "release"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert hacs["zip_release"] is True
    with zipfile.ZipFile(tmp_path / hacs["filename"]) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "installed")
    # HACS unpacks the zip into custom_components/smartserver: files at the top level.
    assert {"manifest.json", "__init__.py", "update.py", "firmware/manifest.json"} <= names
    assert not any(name.endswith(".py") and name.startswith("firmware/") for name in names)
    bundle = load_bundle(tmp_path / "installed" / "firmware")
    assert bundle is not None
    assert bundle.version == firmware_version(ROOT / "firmware" / "esp32")
    assert "node.mpy" in bundle.files
    assert bundle.notes.startswith("# Node firmware")
    # A damaged file is refused rather than installed.
    (tmp_path / "installed" / "firmware" / "node.mpy").write_bytes(b"damaged")
    assert load_bundle(tmp_path / "installed" / "firmware") is None


def _release(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "script" / "release"), "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_release_refuses_a_tag_that_is_not_the_manifest_version(tmp_path: Path) -> None:
    version = json.loads((ROOT / "custom_components" / "smartserver" / "manifest.json").read_text())[
        "version"
    ]
    refused = _release(tmp_path / "wrong", "--tag", "v0.0.0-wrong")
    assert refused.returncode == 2
    assert f"expected v{version}" in refused.stdout
    assert not (tmp_path / "wrong").exists()
    built = _release(tmp_path / "right", "--tag", f"v{version}")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "right" / "smartserver.zip").is_file()


def test_release_carries_a_micropython_image_when_given_one(tmp_path: Path) -> None:
    image = tmp_path / "ESP32_GENERIC-OTA-v1.25.0.app-bin"
    image.write_bytes(app_image("v1.25.0"))
    built = _release(tmp_path / "out", "--image", str(image))
    assert built.returncode == 0, built.stderr
    assert "MicroPython 1.25.0" in built.stdout
    with zipfile.ZipFile(tmp_path / "out" / "smartserver.zip") as zf:
        zf.extractall(tmp_path / "installed")
    shipped = load_image(tmp_path / "installed" / "firmware" / "micropython.app-bin")
    assert shipped.version == "1.25.0"
    assert shipped.path.read_bytes() == image.read_bytes()


def test_release_refuses_an_image_that_is_not_micropython(tmp_path: Path) -> None:
    image = tmp_path / "esphome.bin"
    image.write_bytes(app_image("2025.5.0", project=b"esphome"))
    refused = _release(tmp_path / "out", "--image", str(image))
    assert refused.returncode == 2
    assert "not a MicroPython ESP32 app image" in refused.stdout
    assert not (tmp_path / "out").exists()
