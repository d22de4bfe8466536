# `esp32.Partition` for the unix port, as strict as MicroPython 1.25's
# ports/esp32/esp32_partition.c over ESP-IDF 5 (esp_partition_*, esp_ota_ops.c,
# bootloader_common.c, esp_image_format.c). The flash is files in SHIM_PARTITIONS
# (outside the node's filesystem, as on the chip): table.json ([label, type, subtype,
# size] rows) and one <label>.bin per partition. SHIM_RUNNING names the partition the
# harness's bootloader model (script/harness/bootloader.py, at each boot) started.
# Errors are the port's: OSError(-<esp_err_t>, "<name>"), OSError(ENOENT) for no partition.
# esp32_ota.py: otadata, esp_image_verify. Both run on CPython too: the bootloader model
# uses their flash format and image check.
import os

BLOCK = 4096  # NATIVE_BLOCK_SIZE_BYTES, SPI_FLASH_SEC_SIZE
APP, DATA = 0, 1
FACTORY, OTA_0, OTA_MAX = 0x00, 0x10, 0x20
DATA_OTA = 0x00
ANY = 0xFF
ESP_FAIL = (-1, "ESP_FAIL")
INVALID_ARG = (0x102, "ESP_ERR_INVALID_ARG")
INVALID_SIZE = (0x104, "ESP_ERR_INVALID_SIZE")
NOT_FOUND = (0x105, "ESP_ERR_NOT_FOUND")
VALIDATE_FAILED = (0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")
ENOENT = 2
MMU_PAGE = 0x10000
# Small buffers: the shim's heap is the node's (a board does this in C, off the heap).
_ONES = b"\xff" * 256
_scratch = bytearray(256)


def _dir():
    return os.getenv("SHIM_PARTITIONS") or "partitions"


def _fail(err):
    # check_esp_err (ports/esp32/mphalport.c): the negated code and its name
    raise OSError(-err[0] if err[0] > 0 else err[0], err[1])


def table(directory=None):
    import json

    with open((directory or _dir()) + "/table.json") as f:
        return [tuple(row) for row in json.load(f)]


def _find(type, subtype=ANY, label=None, directory=None):
    return [
        p
        for p in table(directory)
        if p[1] == type and subtype in (ANY, p[2]) and (label is None or p[0] == label)
    ]


def _ota_apps(directory=None):
    # by slot, as get_ota_partition_count() counts them: ota_0, ota_1, ... without gaps
    apps = []
    while True:
        found = _find(APP, OTA_0 + len(apps), directory=directory)
        if not found:
            return apps
        apps.append(found[0])


class _Flash:
    # one partition's file: NOR flash, where a write only clears bits and an erase sets them
    def __init__(self, row, directory=None):
        self.label, self.type, self.subtype, self.size = row[0], row[1], row[2], row[3]
        self.path = (directory or _dir()) + "/" + self.label + ".bin"

    def read(self, offset, buf):
        n = len(buf)
        if offset > self.size:
            _fail(INVALID_ARG)
        if offset + n > self.size:
            _fail(INVALID_SIZE)
        with open(self.path, "rb") as f:
            f.seek(offset)
            f.readinto(buf)

    def _guard(self):
        # CONFIG_SPI_FLASH_DANGEROUS_WRITE_ABORTS: writing the running app aborts (a panic)
        if self.label == os.getenv("SHIM_RUNNING"):
            import ffi

            ffi.open("libc.so.6").func("i", "raise", "i")(11)

    def erase(self, offset, size):
        if offset > self.size:
            _fail(INVALID_ARG)
        if offset + size > self.size or size % BLOCK:
            _fail(INVALID_SIZE)
        if offset % BLOCK:
            _fail(INVALID_ARG)
        self._guard()
        with open(self.path, "r+b") as f:
            f.seek(offset)
            for _ in range(size // len(_ONES)):
                f.write(_ONES)

    def write(self, offset, data):
        n = len(data)
        if offset > self.size:
            _fail(INVALID_ARG)
        if offset + n > self.size:
            _fail(INVALID_SIZE)
        self._guard()
        old = _scratch
        with open(self.path, "r+b") as f:
            done = 0
            while done < n:
                k = min(len(old), n - done)
                f.seek(offset + done)
                f.readinto(old)
                for i in range(k):
                    old[i] &= data[done + i]
                f.seek(offset + done)
                f.write(memoryview(old)[:k])
                done += k


def _otadata(directory=None):
    found = _find(DATA, DATA_OTA, directory=directory)
    return _Flash(found[0], directory) if found else None


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = APP
    TYPE_DATA = DATA

    def __init__(self, id, block_size=BLOCK):
        if block_size != BLOCK:
            raise NotImplementedError("shim: only %d-byte blocks" % BLOCK)
        if isinstance(id, int):
            if id == Partition.BOOT:
                import esp32_ota

                row = esp32_ota.boot_partition()
            elif id == Partition.RUNNING:
                row = _find(APP, label=os.getenv("SHIM_RUNNING"))[0]
            else:
                raise ValueError
        else:
            found = _find(APP, label=id) or _find(DATA, label=id)
            row = found[0] if found else None
        if row is None:
            raise OSError(ENOENT)
        self._flash = _Flash(row)

    @staticmethod
    def find(type=APP, subtype=ANY, label=None, block_size=BLOCK):
        return [Partition(p[0]) for p in _find(type, subtype, label)]

    def __repr__(self):
        f = self._flash
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>" % (
            f.type,
            f.subtype,
            _address(f.label),
            f.size,
            f.label,
        )

    def info(self):
        f = self._flash
        return (f.type, f.subtype, _address(f.label), f.size, f.label, False)

    def readblocks(self, block_num, buf, offset=0):
        self._flash.read(block_num * BLOCK + offset, buf)

    def writeblocks(self, block_num, buf, offset=None):
        if offset is None:
            self._flash.erase(block_num * BLOCK, len(buf))  # whole sectors only
            offset = 0
        self._flash.write(block_num * BLOCK + offset, buf)

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # init, deinit, sync
            return 0
        if cmd == 4:
            return self._flash.size // BLOCK
        if cmd == 5:
            return BLOCK
        if cmd == 6:
            self._flash.erase(arg * BLOCK, BLOCK)
            return 0
        return None

    def set_boot(self):
        _ota("set_boot", self._flash.label)

    def get_next_update(self):
        # esp_ota_get_next_update_partition(self): the OTA slot after this one, else ota_0
        apps = _ota_apps()
        if not apps:
            raise OSError(ENOENT)
        labels = [p[0] for p in apps]
        if self._flash.label in labels:
            return Partition(labels[(labels.index(self._flash.label) + 1) % len(labels)])
        return Partition(labels[0])

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        _ota("mark_valid")


def _ota(call, label=""):
    # esp_ota_ops and the image check are C on a board: they cost the node no heap. The
    # harness runs them (esp32_ota.py) in its own Python on the same flash files
    # (bootloader.py's ota_call); the error comes back as the port raises it.
    out = _dir() + "/ota_call.out"
    status = os.system(
        "%s %s %s %s > %s" % (os.getenv("SHIM_PYTHON"), os.getenv("SHIM_BOOTLOADER"), call, label, out)
    )
    if status:
        with open(out) as f:
            err = f.read().split(" ", 1)
        raise OSError(int(err[0]), err[1].strip())


def _address(label):
    # partitions follow each other from 0x10000 (data ones from 0x9000 are not modelled)
    address = MMU_PAGE
    for p in table():
        if p[0] == label:
            return address
        address += p[3]
    return address
