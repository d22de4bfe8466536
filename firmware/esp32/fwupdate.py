# Firmware updates (docs/management.md): the new modules are staged in fw_new/ by
# signed puts, with a manifest of their SHA-256s. install() checks every file against
# it, moves each current file to fw_old/ before putting its successor in place, and
# marks the update as on trial. main.py runs the first boot; a second boot before
# trial() confirmed it (healthy for confirm_s) restores fw_old/. A module identical to
# its copy in ROMFS (deploy-firmware --romfs) is not put on the filesystem, where it
# would shadow that copy and load onto the heap. Loaded on demand.
import gc
import os
from binascii import hexlify
from hashlib import sha256

import log
from fsutil import FIXED, FW_PENDING, IMG_PENDING, Refused, exists, read_json, remove, safe_path, write_json

NEW = "fw_new"  # staged update files
OLD = "fw_old"  # the previous firmware's files, until the new one is confirmed
PENDING = FW_PENDING  # an update on trial (main.py rolls back if unconfirmed)
RESULT = "fw_result.json"  # what happened to the last update (main.py writes rollbacks)
FIRMWARE = "firmware.json"  # version and build of the installed firmware
ROM = "/rom/"  # where a ROMFS partition is mounted


def file_sha256(path):
    h = sha256()
    buf = memoryview(bytearray(512))  # a file's last piece as a view, not a copy
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf[:n])
    return hexlify(h.digest()).decode()


def install(arg):
    """Verify the staged firmware (arg: SHA-256 of its manifest) and swap it in."""
    if exists(IMG_PENDING):
        raise Refused("refused: a MicroPython image is on trial")
    manifest = NEW + "/manifest.json"
    if not exists(manifest) or file_sha256(manifest) != arg.lower():
        raise Refused("manifest missing or its SHA-256 does not match")
    data = read_json(manifest)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise Refused("manifest is not valid")
    files = data["files"]
    for name, digest in files.items():
        if "/" in name or not safe_path(name) or name in FIXED or name == FIRMWARE:
            raise Refused("manifest names %r" % name)
        if not exists(NEW + "/" + name) or file_sha256(NEW + "/" + name) != digest:
            raise Refused("staged file %s missing or corrupt" % name)
    gc.collect()
    version = str(data.get("version"))
    build = str(data.get("build") or "")
    if not exists(OLD):
        os.mkdir(OLD)
    for entry in list(os.ilistdir(OLD)):
        remove(OLD + "/" + entry[0])
    names = list(files) + [FIRMWARE]
    new = [n for n in names if not exists(n)]
    in_rom = [n for n in files if exists(ROM + n) and file_sha256(ROM + n) == files[n]]
    # Written before the swap: main.py can undo a swap cut short by a power loss.
    pending = {"version": version, "files": names, "new": new, "state": "swap", "boots": 0}
    write_json(PENDING, pending)
    for name in names:
        if exists(name):
            os.rename(name, OLD + "/" + name)
        if name in in_rom:
            remove(NEW + "/" + name)  # its ROMFS copy runs in place
        elif name != FIRMWARE:
            os.rename(NEW + "/" + name, name)
    write_json(FIRMWARE, {"version": version, "build": build})
    pending["state"] = "trial"
    write_json(PENDING, pending)
    remove(manifest)
    remove(RESULT)
    log.info("firmware %s installed: rebooting into it on trial" % version)


async def trial(mqtt, config, config_done, on_confirmed):
    """Confirm the firmware on trial once healthy (trial.py); main.py rolls it back."""
    import trial as rule

    state = read_json(PENDING) or {}
    version = state.get("version")
    await rule.healthy(mqtt, config, config_done, "firmware %s" % version)
    for name in state.get("files", ()):
        remove(OLD + "/" + name)
    write_json(RESULT, {"result": "confirmed", "version": version})
    remove(PENDING)
    log.info("firmware %s confirmed" % version)
    on_confirmed()
