"""The unix port's esp32.Partition refuses what the ESP32 port refuses (script/harness/shim/esp32.py)."""

from __future__ import annotations

import json
from pathlib import Path

from script.harness import esp_image
from script.harness.board import APP_SIZE, PARTITIONS, SHIM
from script.harness.bootloader import boot_select, esp32_shim, ota_env
from script.harness.micropython import MicroPython

# Runs on the unix port; prints one line per step: the result or the exception's args.
SCRIPT = r"""
import sys
sys.path.append(SHIM)
from esp32 import Partition

def step(name, f):
    try:
        print(name + "|ok", f())
    except Exception as err:
        print(name + "|" + type(err).__name__, err.args)

run = Partition(Partition.RUNNING)
step("running", lambda: run.info())
nxt = None
def get_next():
    global nxt
    nxt = run.get_next_update()
    return nxt.info()[4]
step("next", get_next)
if nxt is not None:
    step("blocks", lambda: (nxt.ioctl(4, 0), nxt.ioctl(5, 0)))
    step("unaligned erase", lambda: nxt.writeblocks(0, bytearray(1000)))
    step("past the end", lambda: nxt.writeblocks(nxt.ioctl(4, 0), bytearray(4096)))
    step("read past the end", lambda: nxt.readblocks(nxt.ioctl(4, 0) - 1, bytearray(4096), 1))
    step("erase block", lambda: nxt.ioctl(6, 1))
    def nor():
        nxt.writeblocks(1, b"\x0f" * 4096)
        nxt.writeblocks(1, b"\xf0\xff", 0)  # no erase: bits only clear
        buf = bytearray(4)
        nxt.readblocks(1, buf)
        return bytes(buf)
    step("nor", nor)
    step("set_boot garbage", lambda: nxt.set_boot())
    step("boot", lambda: Partition(Partition.BOOT).info()[4])
step("confirm", lambda: Partition.mark_app_valid_cancel_rollback())
step("label", lambda: Partition("nvs").info()[:2])
step("no such", lambda: Partition("nothing"))
step("find", lambda: [p.info()[4] for p in Partition.find(Partition.TYPE_APP)])
"""


def _flash(tmp_path: Path, kind: str) -> Path:
    directory = tmp_path / kind
    directory.mkdir()
    table = PARTITIONS[kind]
    (directory / "table.json").write_text(json.dumps(table))
    for label, _, _, size in table:
        (directory / f"{label}.bin").write_bytes(b"\xff" * size)
    image = esp_image.build("v1.25.0", 8192)
    app = next(row[0] for row in table if row[1] == 0)
    (directory / f"{app}.bin").write_bytes(image + b"\xff" * (APP_SIZE - len(image)))
    return directory


def _run(micropython: MicroPython, tmp_path: Path, kind: str) -> dict[str, str]:
    directory = _flash(tmp_path, kind)
    label, _ = boot_select(directory)
    script = tmp_path / "partition_script.py"
    script.write_text(f"SHIM = {str(SHIM)!r}\n" + SCRIPT)
    env = {"SHIM_PARTITIONS": str(directory), "SHIM_RUNNING": label, **ota_env()}
    result = micropython.run(script, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(line.split("|", 1) for line in result.stdout.splitlines())


def test_the_partition_model_is_as_strict_as_the_port(micropython: MicroPython, tmp_path: Path) -> None:
    out = _run(micropython, tmp_path, "ota")
    assert out["running"].startswith("ok (0, 16, ")
    assert out["running"].endswith(", 262144, 'ota_0', False)")
    assert out["next"] == "ok ota_1"
    assert out["blocks"] == "ok (64, 4096)"
    # esp_partition_erase_range: whole sectors within the partition only
    assert out["unaligned erase"] == "OSError (-260, 'ESP_ERR_INVALID_SIZE')"
    assert out["past the end"] == "OSError (-260, 'ESP_ERR_INVALID_SIZE')"
    assert out["read past the end"] == "OSError (-260, 'ESP_ERR_INVALID_SIZE')"
    assert out["erase block"] == "ok 0"
    assert out["nor"] == r"ok b'\x00\x0f\x0f\x0f'"
    # esp_ota_set_boot_partition verifies the image first: the boot partition stays
    assert out["set_boot garbage"] == "OSError (-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')"
    assert out["boot"] == "ok ota_0"
    # USB-flashed: otadata is blank, so there is nothing to confirm (ESP-IDF's ESP_FAIL)
    assert out["confirm"] == "OSError (-1, 'ESP_FAIL')"
    assert out["label"] == "ok (1, 2)"
    assert out["no such"] == "OSError (2,)"
    assert out["find"] == "ok ['ota_0', 'ota_1']"


def test_a_build_without_ota_partitions_has_no_next_update(micropython: MicroPython, tmp_path: Path) -> None:
    out = _run(micropython, tmp_path, "factory")
    assert out["running"].endswith(", 262144, 'factory', False)")
    assert out["next"] == "OSError (2,)"
    assert out["confirm"] == "OSError (-261, 'ESP_ERR_NOT_FOUND')"
    assert out["find"] == "ok ['factory']"


def test_the_bootloader_rolls_back_an_unconfirmed_image(tmp_path: Path) -> None:
    shim = esp32_shim()
    directory = _flash(tmp_path, "ota")
    flash = shim.esp32._Flash(PARTITIONS["ota"][1], str(directory))
    image = esp_image.build("v1.26.0", 8192)
    (directory / "ota_1.bin").write_bytes(image + b"\xff" * (APP_SIZE - len(image)))
    assert boot_select(directory) == ("ota_0", None)
    shim.write_entry(flash, 0, 2, shim.NEW)  # what set_boot(ota_1) writes
    assert boot_select(directory) == ("ota_1", None)
    assert shim.read_otadata(flash)[0][:2] == [2, shim.PENDING_VERIFY]
    # reset before mark_app_valid_cancel_rollback: aborted, the previous app boots
    assert boot_select(directory) == ("ota_0", None)
    assert shim.read_otadata(flash)[0][:2] == [2, shim.ABORTED]
    # a corrupt image in the chosen slot: the bootloader falls back to another one
    shim.write_entry(flash, 1, 3, shim.VALID)  # ota_0 by seq 3
    (directory / "ota_0.bin").write_bytes(b"\xff" * APP_SIZE)
    label, skipped = boot_select(directory)
    assert label == "ota_1"
    assert skipped == "ota_0: invalid magic byte (nothing flashed here?)"
