"""Management framing (docs/management.md): data and reply chunks, put arguments, the verdict.

The integration (custom_components/smartserver/mgmt_framing.py) and smartserver-node
(firmware/cli/smartserver_node/mgmt_framing.py) carry this same file, byte for byte:
tests/firmware/test_mgmt_topics.py keeps the two identical. Standard library only.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

CHUNK = 1400  # the node's chunk size too: well under its 4 KB message limit
KINDS = ("more", "ok", "err")  # a chunk follows; the last one, success; the last one, failure
CONFIRMED = "confirmed"
ROLLED_BACK = "rolled back"
IMAGE_MAGIC = 0xE9  # esp_image_header_t.magic
APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t.magic_word, after the image and first segment header
APP_DESC_AT = 24 + 8
VERSION_MAX = 32  # esp_app_desc_t.version is char[32]


def chunk_payload(nonce: str, seq: int, kind: str, body: bytes) -> bytes:
    r"""One chunk: "<nonce> <seq> <kind>\\n<body>"."""
    return f"{nonce} {seq} {kind}\n".encode() + body


def data_chunks(nonce: str, data: bytes) -> list[bytes]:
    """Return a put's data as CHUNK-byte chunks, the last one `ok`; empty data is one chunk."""
    pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    last = len(pieces) - 1
    return [chunk_payload(nonce, seq, "ok" if seq == last else "more", p) for seq, p in enumerate(pieces)]


def put_arg(path: str, data: bytes) -> str:
    r"""Return the put command's argument: "<path>\\n<SHA-256 hex>\\n<size>"."""
    return f"{path}\n{hashlib.sha256(data).hexdigest()}\n{len(data)}"


def image_arg(data: bytes, version: str) -> str:
    r"""Return the image command's argument: "<SHA-256 hex>\\n<size>\\n<version>"."""
    return f"{hashlib.sha256(data).hexdigest()}\n{len(data)}\n{version}"


def app_version(image: bytes) -> str | None:
    """Return the version in an ESP32 app image's descriptor (`v1.25.0` gives `1.25.0`).

    None if `image` is not an ESP32 app image (an `.app-bin`) with the descriptor's magic,
    or its version is empty or not printable ASCII. A full flash image (bootloader first)
    is not an app image: its byte 32 is no descriptor.
    """
    end = APP_DESC_AT + 16 + VERSION_MAX
    if len(image) < end or image[0] != IMAGE_MAGIC:
        return None
    if struct.unpack_from("<I", image, APP_DESC_AT)[0] != APP_DESC_MAGIC:
        return None
    raw = image[APP_DESC_AT + 16 : end].split(b"\0", 1)[0]
    if not raw or any(b < 0x20 or b > 0x7E for b in raw):
        return None
    version = raw.decode()
    return version[1:] if version[:1] == "v" and version[1:2].isdigit() else version


def is_micropython(image: bytes) -> bool:
    """Whether `image` is an app image of MicroPython's ESP32 port (its descriptor's project).

    An image of another project (ESPHome, ...) would take the node out of reach for good.
    """
    return (
        app_version(image) is not None
        and image[APP_DESC_AT + 48 : APP_DESC_AT + 80].split(b"\0", 1)[0] == b"micropython"
    )


@dataclass(frozen=True)
class Reply:
    """One reply chunk from the node."""

    nonce: str
    seq: int
    kind: str
    body: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Reply | None:
        """Return the chunk, or None for a payload that is not one."""
        head, sep, body = payload.partition(b"\n")
        parts = head.decode(errors="replace").split(" ")
        if not sep or len(parts) != 3 or not parts[1].isdigit() or parts[2] not in KINDS:
            return None
        return cls(parts[0], int(parts[1]), parts[2], body)


def verdict(update: dict[str, Any], build: str | None, version: str, expected_build: str) -> str | None:
    """Return CONFIRMED or ROLLED_BACK once a node's info tells the update's end, else None.

    `update` and `build` are the info's fields. Confirmed counts for the expected build
    only: the same version may be installed already with another one.
    """
    if update.get("version") != version:
        return None
    if update.get("result") == ROLLED_BACK:
        return ROLLED_BACK
    if update.get("result") == CONFIRMED and build == expected_build:
        return CONFIRMED
    return None


def image_verdict(image: dict[str, Any], sha256: str) -> str | None:
    """Return CONFIRMED or ROLLED_BACK once info["image"] tells how this image ended, else None.

    `sha256` is the image's SHA-256 hex, as in the image command's argument.
    """
    if image.get("sha256") != sha256:
        return None
    result = image.get("result")
    return result if result in (CONFIRMED, ROLLED_BACK) else None
