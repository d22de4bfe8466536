# MicroPython image updates (docs/management.md): a signed `image` command streams an
# ESP32 app image into the next OTA partition, hashing it on the way; after the last
# chunk the partition is read back and hashed again, size and SHA-256 checked against
# the signed command, then set_boot() (ESP-IDF verifies the image) and a reset. The boot
# after it: image_trial.py. Loaded on demand.
# Each chunk goes to flash straight from the MQTT client's buffer: each sector is erased
# as the image reaches it and written in 16-byte units (an encrypted partition takes no
# less), so only a chunk's last few bytes wait in RAM, not a 4 KB sector.
import asyncio
import gc
from binascii import hexlify
from hashlib import sha256
from time import ticks_ms

import log
from fsutil import FW_PENDING, IMG_PENDING, Refused, read_json, remove, write_json

BLOCK = 4096  # the flash sector: the unit of an erase
UNIT = 16  # flash writes: offsets and lengths in whole units
PROGRESS = 64 * 1024  # a "written" reply every 64 KB
HEX = "0123456789abcdef"
ERASE = 6  # the block device ioctl that erases one block


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
        self.buf = bytearray(512)  # read back through this; its first UNIT bytes wait for flash
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
        self.fill = 0  # bytes in buf waiting for a whole UNIT: the only image data in RAM
        self.flashed = 0  # bytes on flash
        self.erased = 0  # bytes erased, whole sectors

    def write(self, data):
        """Take a chunk (a view the caller reuses); return the bytes on flash when
        another PROGRESS bytes are (mgmt.py reports them as "written <bytes>")."""
        n = len(data)
        if self.got + n > self.size:
            raise Refused("size mismatch: more than the %d bytes announced" % self.size)
        self.hash.update(data)
        self.got += n
        before = self.flashed
        done = 0
        if self.fill:
            done = min(UNIT - self.fill, n)
            self.buf[self.fill : self.fill + done] = data[:done]
            self.fill += done
            if self.fill == UNIT:
                self._flash(memoryview(self.buf)[:UNIT])
                self.fill = 0
        whole = (n - done) // UNIT * UNIT
        if whole:
            self._flash(data[done : done + whole])
            done += whole
        if done < n:
            self.fill = n - done
            self.buf[: self.fill] = data[done:]
        if self.flashed // PROGRESS > before // PROGRESS:
            return self.flashed // PROGRESS * PROGRESS
        return None

    def _flash(self, data):
        end = self.flashed + len(data)
        while self.erased < end:
            self.part.ioctl(ERASE, self.erased // BLOCK)
            self.erased += BLOCK
        # with an offset, writeblocks() writes without erasing
        self.part.writeblocks(self.flashed // BLOCK, data, self.flashed % BLOCK)
        self.flashed = end

    async def complete(self):
        """Flush, check, read back, set_boot: the SHA-256 hex, or Refused."""
        buf = self.buf
        if self.fill:
            for i in range(self.fill, UNIT):
                buf[i] = 0xFF  # as erased
            self._flash(memoryview(buf)[:UNIT])
            self.fill = 0
        digest = hexlify(self.hash.digest()).decode()
        if digest != self.digest or self.got != self.size:
            raise Refused("checksum mismatch: got %s (%d bytes)" % (digest, self.got))
        h = sha256()  # what the flash holds now, not what was sent
        at = 0
        step = len(buf)
        while at < self.size:
            self.part.readblocks(at // BLOCK, buf, at % BLOCK)
            h.update(buf if self.size - at >= step else memoryview(buf)[: self.size - at])
            at += step
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
