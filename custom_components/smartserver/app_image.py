"""MicroPython images (ESP32 `.app-bin` files) for the nodes' MicroPython updates.

An image comes from the file the options name in the storage folder, or from the
release zip (`firmware/micropython.app-bin`, script/release --image). Everything here
blocks on file I/O: call it from an executor job, never from the event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .const import LOGGER
from .mgmt_framing import app_version, is_micropython

IMAGE_FILE = "micropython.app-bin"  # the image in the release zip's firmware/
MAX_IMAGE = 16 * 1024 * 1024  # an ESP32's largest flash


class ImageError(Exception):
    """Why a MicroPython image file cannot be used (the message says why)."""


class ImageMissing(ImageError):
    """No such file (or it cannot be read)."""


class ImageOutside(ImageError):
    """The path leads out of the storage folder."""


class ImageInvalid(ImageError):
    """Not a MicroPython ESP32 app image with a version."""


class ImageChanged(ImageError):
    """The file is no longer the one that was loaded."""


@dataclass(frozen=True, slots=True)
class Image:
    """A MicroPython image (an ESP32 `.app-bin`) to install: the file and what it held when read."""

    path: Path
    version: str
    sha256: str
    size: int

    def read(self) -> bytes:
        """Return the file's bytes (blocking), refused if it changed since it was loaded."""
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise ImageMissing(str(err)) from err
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ImageChanged("the file changed since SmartServer loaded it")
        return data


def load_image(path: Path) -> Image:
    """Read and check a MicroPython image (blocking); raise ImageError if it is none."""
    try:
        if path.stat().st_size > MAX_IMAGE:
            raise ImageInvalid(f"bigger than {MAX_IMAGE} bytes")
        data = path.read_bytes()
    except OSError as err:
        raise ImageMissing(err.strerror or str(err)) from err
    version = app_version(data)
    if version is None or not is_micropython(data):
        raise ImageInvalid("not a MicroPython ESP32 app image (.app-bin)")
    return Image(path, version, hashlib.sha256(data).hexdigest(), len(data))


def image_in_storage(storage: Path, name: str) -> Path:
    """Return the file `name` names in the storage folder; ImageError if it is outside."""
    path = (storage / name).resolve()
    if not path.is_relative_to(storage.resolve()):
        raise ImageOutside("not inside the storage folder")
    return path


def find_image(storage: Path, name: str, bundle_dir: Path) -> Image | ImageError | None:
    """Return the image the options name, else the bundled one (blocking).

    None when neither is configured, the ImageError when the chosen one is unusable:
    the one named in the options is never silently replaced by the bundled one.
    """
    try:
        if name:
            return load_image(image_in_storage(storage, name))
        if not (bundle_dir / IMAGE_FILE).exists():
            return None
        return load_image(bundle_dir / IMAGE_FILE)
    except ImageError as err:
        LOGGER.error("MicroPython image %s cannot be used: %s", name or IMAGE_FILE, err)
        return err
