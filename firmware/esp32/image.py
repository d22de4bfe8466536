# MicroPython image updates (docs/management.md): a signed `image` command streams an
# ESP32 app image into the next OTA partition, sector by sector through one 4 KB buffer,
# hashing it on the way; after the last chunk the partition is read back and hashed
# again, size and SHA-256 checked against the signed command, then set_boot() (ESP-IDF
# verifies the image) and a reset. The boot after it: image_trial.py. Loaded on demand.
import asyncio
import gc
from binascii import hexlify
from hashlib import sha256
from time import ticks_ms

import log
from fsutil import FW_PENDING, IMG_PENDING, Refused, read_json, remove, write_json

BLOCK = 4096  # the flash sector: writeblocks() erases whole ones
PROGRESS = 64 * 1024  # a "written" reply every 64 KB
HEX = "0123456789abcdef"


class Receiver:
    """One image transfer, for mgmt.py: write() each chunk, then complete()."""

    reset = True  # the node resets into the image after `ok`

    def __init__(self, nonce, arg):
        parts = arg.split("\n")
        if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
            raise Refused("image needs SHA-256, size and version")
        digest = parts[0].lower()
        version = parts[2]
        if any(c not in HEX for c in digest):
            raise Refused("image needs SHA-256, size and version")
        if len(version) > 32 or any(c < " " or c > "~" for c in version):
            raise Refused("bad version label %r" % version[:40])
        if read_json(FW_PENDING) is not None:
            raise Refused("refused: a firmware update is on trial")
        if read_json(IMG_PENDING) is not None:
            raise Refused("refused: an image is already on trial")
        gc.collect()
        self.buf = bytearray(BLOCK)  # first, while the heap has room in one piece
        from esp32 import Partition

        try:
            part = Partition(Partition.RUNNING).get_next_update()
        except OSError:
            raise Refused("no OTA partition: flash an OTA build over USB first")
        info = part.info()
        size = int(parts[1])
        if size == 0 or size > info[3]:
            raise Refused(
                "an image of %d bytes does not fit the %d-byte partition %s" % (size, info[3], info[4])
            )
        self.nonce = nonce
        self.path = "an image for " + info[4]  # for mgmt.py's log lines
        self.digest = digest
        self.size = size
        self.version = version
        self.part = part
        self.label = info[4]
        self.seq = 0  # the next data chunk
        self.rseq = 0  # the next reply chunk
        self.got = 0
        self.hash = sha256()
        self.at = ticks_ms()
        self.fill = 0  # bytes in buf: the only image data in RAM
        self.block = 0

    def write(self, data):
        """Take a chunk; return a progress line when another PROGRESS bytes are on flash."""
        n = len(data)
        if self.got + n > self.size:
            raise Refused("size mismatch: more than the %d bytes announced" % self.size)
        self.hash.update(data)
        self.got += n
        done = 0
        note = None
        while done < n:
            k = min(BLOCK - self.fill, n - done)
            self.buf[self.fill : self.fill + k] = data[done : done + k]
            self.fill += k
            done += k
            if self.fill == BLOCK:
                self.part.writeblocks(self.block, self.buf)  # erases the sector first
                self.block += 1
                self.fill = 0
                if self.block * BLOCK % PROGRESS == 0:
                    note = "written %d" % (self.block * BLOCK)
        return note

    async def complete(self):
        """Flush, check, read back, set_boot: the SHA-256 hex, or Refused."""
        buf = self.buf
        if self.fill:
            for i in range(self.fill, BLOCK):
                buf[i] = 0xFF  # as erased
            self.part.writeblocks(self.block, buf)
        digest = hexlify(self.hash.digest()).decode()
        if digest != self.digest or self.got != self.size:
            raise Refused("checksum mismatch: got %s (%d bytes)" % (digest, self.got))
        h = sha256()  # what the flash holds now, not what was sent
        block = 0
        left = self.size
        while left > 0:
            self.part.readblocks(block, buf)
            h.update(buf if left >= BLOCK else memoryview(buf)[:left])
            left -= BLOCK
            block += 1
            await asyncio.sleep_ms(0)
        if hexlify(h.digest()).decode() != self.digest:
            raise Refused("read back from %s: SHA-256 differs" % self.label)
        self.buf = buf = None
        gc.collect()
        # Recorded first: a power loss before set_boot() is then reported as a rollback.
        write_json(IMG_PENDING, {"sha256": digest, "version": self.version, "partition": self.label})
        try:
            self.part.set_boot()
        except OSError as err:
            remove(IMG_PENDING)
            raise Refused("set_boot() refused the image: %r" % (err,))
        log.info(
            "MicroPython image %s written to %s: rebooting into it on trial" % (self.version, self.label)
        )
        return digest

    def close(self, keep):
        # The partition keeps the partial image: it is not the boot partition.
        self.buf = None
