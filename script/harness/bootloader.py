"""The ESP32's second stage bootloader, as the harness runs it at each boot of a board.

ESP-IDF's bootloader_utility.c with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (on in
MicroPython's ESP32 builds): an otadata entry still PENDING_VERIFY at boot (the app it
chose last time never called mark_app_valid_cancel_rollback) becomes ABORTED; the valid
entry with the highest sequence number picks the OTA slot (a NEW entry becomes
PENDING_VERIFY); without one, the factory app or ota_0. The first of that slot, the
ones below it and the ones above it that holds a valid image boots. The flash format and
the image check are the esp32 shims' (shim/esp32.py, esp32_ota.py), loaded on CPython.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

SHIM = Path(__file__).parent / "shim"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, SHIM / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def esp32_shim() -> Any:
    """The esp32_ota shim as a CPython module (its `esp32` attribute: the esp32 shim):
    the flash format and image check of the model, for the bootloader and tests."""
    saved = sys.modules.get("esp32")
    sys.modules["esp32"] = _load("esp32")  # what esp32_ota imports, only while it loads
    try:
        return _load("esp32_ota")
    finally:
        if saved is None:
            del sys.modules["esp32"]
        else:
            sys.modules["esp32"] = saved


def boot_select(directory: Path) -> tuple[str, str | None]:
    """Run the bootloader on a board's partitions: (the app partition it boots, why the
    slot it chose first was skipped, or None)."""
    shim = esp32_shim()
    where = str(directory)
    apps = shim._ota_apps(where)
    factory = shim._find(shim.APP, shim.FACTORY, directory=where)
    otadata = shim._otadata(where)
    order = factory[:1] + apps
    index = 0
    if otadata is not None and apps:
        entries = shim.read_otadata(otadata)
        for i in (0, 1):
            if entries[i][1] == shim.PENDING_VERIFY:
                entries[i][1] = shim.ABORTED
                shim.write_entry(otadata, i, entries[i][0], shim.ABORTED)
        chosen = shim.active(entries)
        if chosen >= 0:
            index = (entries[chosen][0] - 1) % len(apps) + len(factory[:1])
            if entries[chosen][1] == shim.NEW:
                shim.write_entry(otadata, chosen, entries[chosen][0], shim.PENDING_VERIFY)
    skipped = None
    for i in [*range(index, -1, -1), *range(index + 1, len(order))]:
        why = shim.verify(shim.esp32._Flash(order[i], where))
        if why is None:
            return str(order[i][0]), skipped
        skipped = skipped or f"{order[i][0]}: {why}"
    raise RuntimeError(f"no bootable app partitions: {skipped}")


def ota_env() -> dict[str, str]:
    """What the esp32 shim needs to run its OTA calls here (ota_call), off the node's heap."""
    return {"SHIM_PYTHON": sys.executable, "SHIM_BOOTLOADER": str(Path(__file__))}


def ota_call(call: str, label: str) -> int:
    """esp32.Partition's set_boot() (of `label`) or mark_app_valid_cancel_rollback() for
    the esp32 shim, in the harness's Python: as in C on a board, not on the node's heap.
    Prints the port's OSError ("<errno> <name>") and returns 1 if it raises one."""
    shim = esp32_shim()
    try:
        if call == "set_boot":
            shim.set_boot(shim.esp32._Flash(shim._find(shim.APP, label=label)[0]))
        else:
            shim.mark_valid()
    except OSError as err:
        print(err.args[0], err.args[1])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(ota_call(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
