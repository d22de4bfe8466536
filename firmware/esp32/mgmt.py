# Remote management over MQTT (docs/management.md): file put/get/ls/rm, reboot,
# eval/exec (only if the board enables them), firmware updates (fwupdate.py) and
# MicroPython image updates (image.py).
# Commands are signed like power commands; file data travels in chunks tied to a
# signed command's nonce and is checked against the SHA-256 the command carries.
# Replies: "<nonce> <seq> <kind>\n<body>", kind "more" (a chunk follows), "ok" or
# "err" (last). Everything streams in CHUNK-byte pieces: the heap is small.
import asyncio
import gc
import json
import os
import sys
from binascii import hexlify
from hashlib import sha256
from time import ticks_diff, ticks_ms

import bootstate
import log
import sign
import topics
from fsutil import FIXED, Refused, makedirs, remove, replace, safe_path

CHUNK = 1400


class Transfer:
    # A put; image.Receiver is the other kind: write() each chunk, then complete().
    reset = False

    def __init__(self, nonce, path, digest, size):
        self.nonce = nonce
        self.path = path
        self.digest = digest
        self.size = size
        self.tmp = path + ".part"
        self.seq = 0  # the next data chunk
        self.rseq = 0  # the next reply chunk
        self.got = 0
        self.hash = sha256()
        self.at = ticks_ms()
        self.f = open(self.tmp, "wb")

    def write(self, data):
        self.f.write(data)
        self.hash.update(data)
        self.got += len(data)

    async def complete(self):
        self.close(True)
        digest = hexlify(self.hash.digest()).decode()
        if digest != self.digest or self.got != self.size:
            remove(self.tmp)
            log.warning("put %s: checksum mismatch, old file kept" % self.path)
            raise Refused("checksum mismatch: got %s (%d bytes)" % (digest, self.got))
        replace(self.tmp, self.path)
        log.info("put %s: %d bytes" % (self.path, self.got))
        return digest

    def close(self, keep):
        f, self.f = self.f, None
        if f is not None:
            f.close()
        if not keep:
            remove(self.tmp)


class Manager:
    def __init__(self, mqtt, config):
        cfg = config.get("mgmt") or {}
        self._mqtt = mqtt
        self._allow_eval = bool(cfg.get("eval"))
        self._idle_ms = int(cfg.get("idle_s", 15)) * 1000  # a stalled transfer is abandoned
        self._verifier = sign.Verifier(config.get("key"), config["node_id"], cfg.get("max_skew_s", 30))
        self.reply_topic = topics.node_topic(config, "mgmt/reply")
        self._transfer = None
        self._busy = False
        self._queue = []
        asyncio.create_task(self._idle_guard())

    def on_message(self, topic, payload, retained):
        """Messages on <base>/node/<node>/mgmt/cmd and .../data (node.py subscribes)."""
        if topic.endswith("/cmd"):
            self._on_command(topic, payload, retained)
        else:
            self._on_data(topic, payload, retained)

    # --- replies (in order: one sender task drains the queue) --------------------

    def _reply(self, nonce, seq, kind, body=b""):
        # Queued as given; header and bytes are made when it goes out. An unpaced image
        # sender has the broker queue chunks ahead of the PUBACK the sender task waits
        # for: meanwhile a report every 64 KB queues here, so each costs one small tuple.
        self._queue.append((nonce, seq, kind, body))
        if not self._busy:
            self._busy = True
            asyncio.create_task(self._send())

    async def _send(self):
        try:
            while self._queue:
                nonce, seq, kind, body = self._queue.pop(0)
                if isinstance(body, int):
                    body = "written %d" % body  # an image's progress (image.py)
                if isinstance(body, str):
                    body = body.encode()
                # header and body go out one after the other (mqtt.publish): no joined copy
                head = ("%s %d %s\n" % (nonce, seq, kind)).encode()
                await self._mqtt.publish(self.reply_topic, (head, body), qos=1)
                head = body = None
        finally:
            self._busy = False

    async def _drained(self):
        while self._busy or self._queue:
            await asyncio.sleep_ms(20)

    # --- commands ----------------------------------------------------------------

    def _on_command(self, topic, payload, retained):
        try:
            cmd, arg = self._verifier.check(payload, retained)
        except sign.Refused as err:
            log.warning("management command refused: %s" % err)
            nonce = self._verifier.nonce  # parsed once: a large payload is not parsed again
            # Answered so the sender learns why; a flood of refusals is not queued up.
            if nonce and not retained and len(self._queue) < 4:
                self._reply(nonce, 0, "err", "refused: %s" % err)
            return
        nonce = self._verifier.nonce  # set by check() when safe to echo
        if not nonce:
            return
        handler = getattr(self, "_cmd_" + cmd, None)
        if handler is None:
            self._reply(nonce, 0, "err", "unknown command %r" % cmd)
            return
        log.info("management: %s %s" % (cmd, arg.split("\n", 1)[0][:60]))
        try:
            handler(nonce, arg)
        except Refused as err:
            self._reply(nonce, 0, "err", str(err))
        except Exception as err:  # eval'd code raises anything: report it, run on
            self._reply(nonce, 0, "err", "%s failed: %r" % (cmd, err))
        self._unload()
        gc.collect()

    def _unload(self):
        # The modules loaded on demand are garbage once no transfer runs their code (an
        # update that went through resets the node anyway).
        sys.modules.pop("fwupdate", None)
        if not getattr(self._transfer, "reset", False):  # no image.Receiver running
            sys.modules.pop("image", None)

    def _path(self, arg):
        if not safe_path(arg):
            raise Refused("bad path %r" % arg)
        return arg

    def _cmd_put(self, nonce, arg):
        # arg: "<path>\n<sha256 hex>\n<size>"
        parts = arg.split("\n")
        if len(parts) != 3 or len(parts[1]) != 64:
            raise Refused("put needs path, SHA-256 and size")
        path = self._path(parts[0])
        if path in FIXED:
            raise Refused("%s is not replaced remotely" % path)
        self._abort("a new transfer started")
        makedirs(path)
        self._transfer = Transfer(nonce, path, parts[1].lower(), int(parts[2]))

    def _abort(self, reason):
        t, self._transfer = self._transfer, None
        if t is not None:
            t.close(False)
            log.warning("transfer of %s abandoned: %s" % (t.path, reason))
            self._reply(t.nonce, t.rseq, "err", "transfer abandoned: %s" % reason)
            self._unload()

    def _on_data(self, topic, payload, retained):
        t = self._transfer
        if retained or t is None:
            return
        # the payload is the MQTT client's buffer (a memoryview): only the head is copied
        head = bytes(payload[:80])
        end = head.find(b"\n")
        head = head[:end].decode().split(" ") if end > 0 else ()
        if len(head) != 3 or head[0] != t.nonce:
            return  # not for this transfer
        try:
            seq = int(head[1])
        except ValueError:
            seq = -1
        if seq != t.seq:
            self._abort("chunk %s out of order (expected %d)" % (head[1], t.seq))
            return
        data = memoryview(payload)[end + 1 :]
        try:
            note = t.write(data)
        except (OSError, Refused) as err:
            self._abort("write failed: %r" % err if isinstance(err, OSError) else str(err))
            return
        if note:
            self._reply(t.nonce, t.rseq, "more", note)
            t.rseq += 1
        t.seq += 1
        t.at = ticks_ms()
        if head[2] == "more":
            return
        self._transfer = None
        asyncio.create_task(self._complete(t))

    async def _complete(self, t):
        try:
            digest = await t.complete()
        except (OSError, Refused) as err:
            t.close(False)
            self._reply(t.nonce, t.rseq, "err", str(err) if isinstance(err, Refused) else "failed: %r" % err)
            self._unload()
            return
        if t.reset:
            await self._reboot(t.nonce, t.rseq, digest)
        else:
            self._reply(t.nonce, t.rseq, "ok", digest)

    async def _idle_guard(self):
        while True:
            await asyncio.sleep_ms(1000)
            t = self._transfer
            if t is not None and ticks_diff(ticks_ms(), t.at) > self._idle_ms:
                self._abort("no data for %d s" % (self._idle_ms // 1000))

    def _cmd_get(self, nonce, arg):
        path = self._path(arg)
        if path.startswith("secrets."):
            raise Refused("%s is not read remotely (WiFi and broker passwords)" % path)
        os.stat(path)  # OSError now, not in the task
        asyncio.create_task(self._stream_file(nonce, path))

    async def _stream_file(self, nonce, path):
        h = sha256()
        seq = 0
        buf = memoryview(bytearray(CHUNK))  # every chunk, sent before the next is read
        try:
            with open(path, "rb") as f:  # noqa: ASYNC230 (no async files in MicroPython)
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(buf[:n])
                    self._reply(nonce, seq, "more", buf[:n])
                    seq += 1
                    await self._drained()
        except OSError as err:
            self._reply(nonce, seq, "err", "read failed: %r" % err)
            return
        self._reply(nonce, seq, "ok", hexlify(h.digest()).decode())

    def _cmd_ls(self, nonce, arg):
        path = self._path(arg) if arg else ""
        out = []
        for entry in os.ilistdir(path or "."):
            is_dir = entry[1] == 0x4000
            size = 0 if is_dir else os.stat((path + "/" if path else "") + entry[0])[6]
            out.append([entry[0], is_dir, size])
        self._send_text(nonce, json.dumps(out))

    def _send_text(self, nonce, text):
        text = memoryview(text.encode())  # the chunks are views of it, not copies
        seq = 0
        while len(text) > CHUNK:
            self._reply(nonce, seq, "more", text[:CHUNK])
            text = text[CHUNK:]
            seq += 1
        self._reply(nonce, seq, "ok", text)

    def _cmd_rm(self, nonce, arg):
        path = self._path(arg)
        if path in FIXED:
            raise Refused("%s is not removed remotely" % path)
        os.remove(path)
        self._reply(nonce, 0, "ok")

    def _cmd_reboot(self, nonce, arg):
        asyncio.create_task(self._reboot(nonce))

    async def _reboot(self, nonce, seq=0, body="rebooting"):
        self._reply(nonce, seq, "ok", body)
        await self._drained()
        await self._mqtt.disconnect()
        bootstate.reset()

    def _cmd_eval(self, nonce, arg):
        if not self._allow_eval:
            raise Refused("eval is disabled (mgmt.eval in board.py)")
        self._send_text(nonce, repr(eval(arg, {})))

    def _cmd_exec(self, nonce, arg):
        if not self._allow_eval:
            raise Refused("exec is disabled (mgmt.eval in board.py)")
        exec(arg, {})
        self._reply(nonce, 0, "ok")

    def _cmd_image(self, nonce, arg):
        import image  # loaded only when needed: the heap is small

        self._abort("a new transfer started")
        self._transfer = image.Receiver(nonce, arg)

    def _cmd_update(self, nonce, arg):
        import fwupdate  # loaded only when needed: the heap is small

        fwupdate.install(arg)
        asyncio.create_task(self._reboot(nonce))
