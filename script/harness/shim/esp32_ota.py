# esp32.Partition's OTA side for the unix port (esp32.py loads it when needed): the
# otadata entries (esp_ota_ops.c, bootloader_common.c), set_boot(), mark_app_valid_
# cancel_rollback() and esp_image_verify (esp_image_format.c). Runs on CPython too.
import struct
from binascii import crc32
from hashlib import sha256

import esp32
from esp32 import (
    APP,
    ESP_FAIL,
    FACTORY,
    INVALID_ARG,
    MMU_PAGE,
    NOT_FOUND,
    OTA_0,
    VALIDATE_FAILED,
    _fail,
    _find,
    _ota_apps,
    _otadata,
    _scratch,
)

NEW, PENDING_VERIFY, VALID, INVALID, ABORTED = 0, 1, 2, 3, 4
UNDEFINED = 0xFFFFFFFF
IMAGE_MAGIC, CHIP_ESP32, MAX_SEGMENTS = 0xE9, 0, 16
# ESP32 memory: flash-mapped (DROM, IROM) and loaded (DRAM, IRAM, RTC) regions
MAPPED = ((0x3F400000, 0x3F800000), (0x400D0000, 0x40400000))
LOADED = (
    (0x3FFAE000, 0x40000000),
    (0x40070000, 0x400A0000),
    (0x400C0000, 0x400C2000),
    (0x50000000, 0x50002000),
)
ENTRY = "<I20sII"  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc


def read_otadata(flash):
    """The two esp_ota_select_entry_t: [seq, state, crc] each."""
    out = []
    buf = bytearray(32)
    for sector in (0, 1):
        flash.read(sector * esp32.BLOCK, buf)
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
    flash.erase(sector * esp32.BLOCK, esp32.BLOCK)
    flash.write(sector * esp32.BLOCK, struct.pack(ENTRY, seq, b"\xff" * 20, state, _crc(seq)))


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


def set_boot(f):
    # esp_ota_set_boot_partition: the image is verified first
    if verify(f) is not None:
        _fail(VALIDATE_FAILED)
    if f.type != APP:
        _fail(INVALID_ARG)
    otadata = _otadata()
    if otadata is None:
        _fail(NOT_FOUND)
    if f.subtype == FACTORY:
        otadata.erase(0, otadata.size)
        return
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


def mark_valid():
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


def boot_partition():
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
