# Files on the node's flash, for node.py, mgmt.py and fwupdate.py: JSON files written
# atomically, the paths a management command may name, and the files it never
# replaces. Refused is a management request refused (a bad path or manifest).
import json
import os

from bootstate import read_json  # noqa: F401 (fsutil's users read JSON files too)

# Never replaced by an update: the rollback lives in main.py, the rest is the board's.
FIXED = ("boot.py", "main.py", "board.py", "secrets.py", "ca.pem")
# An update on trial, of the files (fwupdate.py) or of MicroPython (image.py): one at a time.
FW_PENDING = "fw_pending.json"
IMG_PENDING = "img_pending.json"
IMG_RESULT = "img_result.json"  # how the last image install ended


class Refused(Exception):
    pass


def write_json(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    replace(path + ".tmp", path)


def replace(src, dst):
    # littlefs and unix replace an existing target atomically: the old file stays
    # until the new one is in place. Only a filesystem that refuses loses it briefly.
    try:
        os.rename(src, dst)
    except OSError:
        remove(dst)
        os.rename(src, dst)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def safe_path(path):
    # Paths relative to the flash root, no way up; subdirectories are fine.
    if not path or path.startswith("/") or len(path) > 96:
        return False
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return False
    return True


def makedirs(path):
    # The directories of a file's path, made as needed.
    parts = path.split("/")[:-1]
    for i in range(len(parts)):
        d = "/".join(parts[: i + 1])
        if not exists(d):
            os.mkdir(d)
