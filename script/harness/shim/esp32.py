# `esp32.Partition` for the unix port, as strict as MicroPython 1.25's
# ports/esp32/esp32_partition.c over ESP-IDF 5 (esp_partition_*, esp_ota_ops.c,
# bootloader_common.c, esp_image_format.c). The flash is files in SHIM_PARTITIONS
# (outside the node's filesystem, as on the chip): table.json ([label, type, subtype,
# size] rows) and one <label>.bin per partition. SHIM_RUNNING names the partition the
# harness's bootloader model (boot_select, run by board.py at each boot) started.
# Errors are the port's: OSError(-<esp_err_t>, "<name>"), OSError(ENOENT) for no partition.
# Runs on CPython too: the harness imports it for the bootloader model.
import os
import struct
from binascii import crc32
from hashlib import sha256

BLOCK = 4096  # NATIVE_BLOCK_SIZE_BYTES, SPI_FLASH_SEC_SIZE
APP, DATA = 0, 1
FACTORY, OTA_0, OTA_MAX = 0x00, 0x10, 0x20
DATA_OTA = 0x00
ANY = 0xFF
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED = 0, 1, 2, 3, 4
UNDEFINED = 0xFFFFFFFF
ESP_FAIL = (-1, "ESP_FAIL")
INVALID_ARG = (0x102, "ESP_ERR_INVALID_ARG")
INVALID_SIZE = (0x104, "ESP_ERR_INVALID_SIZE")
NOT_FOUND = (0x105, "ESP_ERR_NOT_FOUND")
VALIDATE_FAILED = (0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")
ENOENT = 2
IMAGE_MAGIC, CHIP_ESP32, MAX_SEGMENTS = 0xE9, 0, 16
MMU_PAGE = 0x10000
# ESP32 memory: flash-mapped (DROM, IROM) and loaded (DRAM, IRAM, RTC) regions
MAPPED = ((0x3F400000, 0x3F800000), (0x400D0000, 0x40400000))
LOADED = (
    (0x3FFAE000, 0x40000000),
    (0x40070000, 0x400A0000),
    (0x400C0000, 0x400C2000),
    (0x50000000, 0x50002000),
)
ENTRY = "<I20sII"  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc
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


def read_otadata(flash):
    """The two esp_ota_select_entry_t: [seq, state, crc] each."""
    out = []
    buf = bytearray(32)
    for sector in (0, 1):
        flash.read(sector * BLOCK, buf)
        seq, _, state, crc = struct.unpack(ENTRY, buf)
        out.append([seq, state, crc])
    return out


def _crc(seq):
    return crc32(struct.pack("<I", seq), 0xFFFFFFFF)  # crc32_le(UINT32_MAX, &ota_seq, 4)


def _valid(entry):
    # bootloader_common_ota_select_valid: INVALID and ABORTED entries are not
    return entry[0] != UNDEFINED and entry[1] not in (INVALID, ABORTED) and entry[2] == _crc(entry[0])


def active(entries):
    """bootloader_common_get_active_otadata: the valid entry with the highest seq, or -1."""
    best = -1
    for i in (0, 1):
        if _valid(entries[i]) and (best < 0 or entries[i][0] > entries[best][0]):
            best = i
    return best


def write_entry(flash, sector, seq, state):
    # rewrite_ota_seq: erase the sector, write the entry (seq_label stays erased)
    flash.erase(sector * BLOCK, BLOCK)
    flash.write(sector * BLOCK, struct.pack(ENTRY, seq, b"\xff" * 20, state, _crc(seq)))


def verify(flash):
    """esp_image_verify(ESP_IMAGE_VERIFY): None if the partition holds a bootable app
    image, else why not."""
    head = bytearray(24)
    flash.read(0, head)
    if head[0] != IMAGE_MAGIC:
        return "invalid magic byte (nothing flashed here?)"
    count = head[1]
    if struct.unpack_from("<H", head, 12)[0] != CHIP_ESP32:
        return "mismatch chip ID"
    if count > MAX_SEGMENTS:
        return "segment count %d exceeds max %d" % (count, MAX_SEGMENTS)
    pos = 24
    check = 0xEF
    buf = _scratch
    seg = bytearray(8)
    for i in range(count):
        if pos + 8 > flash.size:
            return "segment %d header past the partition" % i
        flash.read(pos, seg)
        addr, length = struct.unpack("<II", seg)
        pos += 8
        if length % 4 or pos + length > flash.size:
            return "segment %d: bad length 0x%x" % (i, length)
        mapped = any(lo <= addr < hi for lo, hi in MAPPED)
        if mapped and addr % MMU_PAGE != pos % MMU_PAGE:
            return "segment %d load address 0x%08x does not match data 0x%08x" % (i, addr, pos)
        if not mapped and not any(lo <= addr and addr + length <= hi for lo, hi in LOADED):
            return "segment %d: bad load address range 0x%08x" % (i, addr)
        end = pos + length
        while pos < end:
            n = min(len(buf), end - pos)
            view = memoryview(buf)[:n]
            flash.read(pos, view)
            for b in view:
                check ^= b
            pos += n
    length = (pos + 1 + 15) & ~15  # the checksum byte ends a 16-byte block
    if length > flash.size:
        return "checksum past the partition"
    one = bytearray(1)
    flash.read(length - 1, one)
    if one[0] != check:
        return "checksum failed: calculated 0x%x read 0x%x" % (check, one[0])
    if head[23] == 1:  # hash_appended
        if length + 32 > flash.size:
            return "image length %d does not fit the partition" % (length + 32)
        h = sha256()
        pos = 0
        while pos < length:
            n = min(len(buf), length - pos)
            view = memoryview(buf)[:n]
            flash.read(pos, view)
            h.update(view)
            pos += n
        digest = bytearray(32)
        flash.read(length, digest)
        if h.digest() != bytes(digest):
            return "image hash failed: image is corrupt"
    return None


def boot_select(directory):
    """The second stage bootloader (bootloader_utility.c, rollback enabled): mark an
    entry still PENDING_VERIFY as ABORTED, pick the active entry's slot (a NEW one becomes
    PENDING_VERIFY), or the factory app / ota_0 if there is none; then the first of
    that slot, the ones below it and the ones above it that holds a valid image.
    Returns (label, why the chosen slot was skipped or None)."""
    apps = _ota_apps(directory)
    factory = _find(APP, FACTORY, directory=directory)
    otadata = _otadata(directory)
    order = ([factory[0]] if factory else []) + apps
    index = 0
    if otadata is not None and apps:
        entries = read_otadata(otadata)
        for i in (0, 1):
            if entries[i][1] == PENDING_VERIFY:
                entries[i][1] = ABORTED
                write_entry(otadata, i, entries[i][0], ABORTED)
        chosen = active(entries)
        if chosen >= 0:
            index = (entries[chosen][0] - 1) % len(apps) + (1 if factory else 0)
            if entries[chosen][1] == NEW:
                write_entry(otadata, chosen, entries[chosen][0], PENDING_VERIFY)
    skipped = None
    for i in list(range(index, -1, -1)) + list(range(index + 1, len(order))):
        why = verify(_Flash(order[i], directory))
        if why is None:
            return order[i][0], skipped
        skipped = skipped or "%s: %s" % (order[i][0], why)
    raise RuntimeError("no bootable app partitions: " + str(skipped))


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
                row = _boot_partition()
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
        # esp_ota_set_boot_partition: the image is verified first
        f = self._flash
        if verify(f) is not None:
            _fail(VALIDATE_FAILED)
        if f.type != APP:
            _fail(INVALID_ARG)
        otadata = _otadata()
        if f.subtype == FACTORY:
            if otadata is None:
                _fail(NOT_FOUND)
            otadata.erase(0, otadata.size)
            return
        if otadata is None:
            _fail(NOT_FOUND)
        count = len(_ota_apps())
        slot = f.subtype - OTA_0
        if slot >= count:
            _fail(INVALID_ARG)
        entries = read_otadata(otadata)
        now = active(entries)
        if now < 0:
            write_entry(otadata, 0, slot + 1, NEW)
            return
        seq, i = entries[now][0], 0
        while seq > (slot + 1) % count + i * count:
            i += 1
        write_entry(otadata, now ^ 1, (slot + 1) % count + i * count, NEW)

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
        # esp_ota_current_ota_is_workable(true): fails on a factory app or blank otadata
        otadata = _otadata()
        if otadata is None:
            _fail(NOT_FOUND)
        entries = read_otadata(otadata)
        now = active(entries)
        if now < 0 or not _ota_apps():
            _fail(ESP_FAIL)
        if entries[now][1] != VALID:
            write_entry(otadata, now, entries[now][0], VALID)


def _boot_partition():
    # esp_ota_get_boot_partition: otadata's choice, else factory, else ota_0
    otadata = _otadata()
    apps = _ota_apps()
    if otadata is not None and apps:
        entries = read_otadata(otadata)
        now = active(entries)
        if now >= 0:
            return apps[(entries[now][0] - 1) % len(apps)]
    found = _find(APP, FACTORY) or apps
    return found[0] if found else None


def _address(label):
    # partitions follow each other from 0x10000 (data ones from 0x9000 are not modelled)
    address = MMU_PAGE
    for p in table():
        if p[0] == label:
            return address
        address += p[3]
    return address
