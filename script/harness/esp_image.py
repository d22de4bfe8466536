"""ESP32 app images for tests, laid out as esptool's elf2image writes them.

An image: the 24-byte header (magic 0xE9, segment count, flash mode/size, entry point,
the extended header with chip id 0 and hash_appended 1), segments (load address,
length, data; lengths a multiple of 4), zero padding up to one byte before a 16-byte
boundary, the checksum byte (0xEF xor every segment data byte), then the SHA-256 of all
that. The first segment (DROM) starts with the esp_app_desc_t, as in MicroPython's
`.app-bin`, so the descriptor sits at byte 32; flash-mapped segments (DROM, IROM) load
at an address equal to their file offset modulo 64 KB, as ESP-IDF requires.
"""

from __future__ import annotations

import hashlib
import struct

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
APP_DESC_MAGIC = 0xABCD5432
CHIP_ID_ESP32 = 0
DROM, IRAM, IROM = 0x3F400000, 0x40080000, 0x400D0000
MMU_PAGE = 0x10000  # a flash-mapped segment sits at its load address modulo 64 KB
ENTRY = 0x40081000
# The start of a code segment the harness boots into a panic (board.py): a MicroPython
# build that crashes, still MicroPython's project (HA and the CLI accept only those).
CRASH_CODE = b"panics at boot"


def app_desc(version: str, project: str = "micropython", idf: str = "v5.2.2") -> bytes:
    """Return a 256-byte esp_app_desc_t."""
    return struct.pack(
        "<II8s32s32s16s16s32s32s80s",
        APP_DESC_MAGIC,
        0,  # secure_version
        b"",
        version.encode(),
        project.encode(),
        b"12:00:00",
        b"Apr 15 2025",
        idf.encode(),
        hashlib.sha256(version.encode()).digest(),  # app_elf_sha256: any 32 bytes
        b"",
    )


def crashes(image: bytes) -> bool:
    """Whether an app image is one build(crash=True) made (its code starts with CRASH_CODE)."""
    return image.find(CRASH_CODE, 0, 4096) >= 0


def checksum(segments: list[tuple[int, bytes]]) -> int:
    """Return the image's checksum byte over the segments' data."""
    value = CHECKSUM_SEED
    for _, data in segments:
        for byte in data:
            value ^= byte
    return value


def build(
    version: str = "v1.25.0",
    size: int = 64 * 1024,
    *,
    project: str = "micropython",
    crash: bool = False,
    hash_appended: bool = True,
) -> bytes:
    """Return a valid app image of about `size` bytes (the code segment fills it up).

    `crash` starts the code with CRASH_CODE: the harness boots such an image into a
    panic, as a broken MicroPython build would.
    """
    drom = app_desc(version, project)
    iram = bytes(range(256)) * 4
    irom_at = 24 + 8 + len(drom) + 8 + len(iram) + 8  # where the code segment's data starts
    filler = max(4, (size - irom_at - 16 - 32) // 4 * 4)
    code = bytes((i * 7 + 3) & 0xFF for i in range(filler))
    if crash:
        code = CRASH_CODE + code[len(CRASH_CODE) :]
    # DROM (the descriptor first, at byte 32), IRAM (loaded), IROM (mapped: the bulk)
    segments = [(DROM + 32 % MMU_PAGE, drom), (IRAM, iram), (IROM + irom_at % MMU_PAGE, code)]
    out = bytearray(
        struct.pack(
            "<BBBBIBBBBHBHH4sB",
            IMAGE_MAGIC,
            len(segments),
            2,  # flash mode: DIO
            0x20,  # 4 MB, 40 MHz
            ENTRY,
            0xEE,  # wp_pin: disabled
            0,
            0,
            0,  # spi_pin_drv
            CHIP_ID_ESP32,
            0,  # min_chip_rev
            0,  # min_chip_rev_full
            0xFFFF,  # max_chip_rev_full
            b"",
            1 if hash_appended else 0,
        )
    )
    for address, data in segments:
        out += struct.pack("<II", address, len(data)) + data
    out += bytes(15 - len(out) % 16)
    out.append(checksum(segments))
    if hash_appended:
        out += hashlib.sha256(out).digest()
    return bytes(out)
