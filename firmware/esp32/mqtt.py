# An asyncio MQTT 3.1.1 client in the spirit of mqtt_as, for ESP32 without PSRAM.
# TLS with CA verification and the server's hostname; Will OFFLINE retained on the
# status topic; ONLINE on every connect; QoS 0 and 1 (retransmitted with DUP);
# reconnect with backoff, broker first, then WiFi; resubscribe after reconnect.
# Every drop closes the socket (asyncio's Stream.close() does nothing in MicroPython:
# only wait_closed() does), DNS runs off the loop (offload.py), and WiFi is left to the
# driver's own reconnect once asked (connect() during it fails on the ESP32).
# Memory is bounded: fixed subscriptions, at most MAX_INFLIGHT QoS 1 messages in
# flight, incoming messages above max_msg bytes are skipped, not buffered. As in
# mqboard, every incoming message is read into one buffer allocated at start (a 1.4 KB
# chunk needs no 1.4 KB hole in a fragmented heap) and handlers get a memoryview of it
# that they must not keep; an outgoing payload is written after its header, not copied.
import asyncio
import gc
import random
import socket
import struct
from errno import EINPROGRESS, ENOMEM, ETIMEDOUT
from time import ticks_diff, ticks_ms

import bootstate
import network
import offload

MAX_INFLIGHT = 4
# A payload up to this size goes out in one write with its header: two writes cost a
# round trip (Nagle's algorithm holds the second segment until the first is acknowledged,
# which the broker delays); a larger one is written after the header, not copied.
JOIN = 512
ONLINE = b"ONLINE"
OFFLINE = b"OFFLINE"
_CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def writable(sock):
    # asyncio's own wait for a writable socket (extmod/asyncio/stream.py does the same)
    yield asyncio.core._io_queue.queue_write(sock)


class MQTTError(OSError):
    pass


def _vlen(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return out


def _field(data):
    if isinstance(data, str):
        data = data.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind, body):
    return bytes([kind]) + _vlen(len(body)) + body


def _publish_parts(topic, msg, retain, qos, pid, dup):
    # PUBLISH as its header and the payload's parts, sent as they are (no joined copy)
    size = 0
    for part in msg:
        size += len(part)
    if isinstance(topic, str):
        topic = topic.encode()
    kind = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    head = bytearray([kind]) + _vlen(2 + len(topic) + (2 if qos else 0) + size)
    head += struct.pack("!H", len(topic))
    head += topic
    if qos:
        head += struct.pack("!H", pid)
    if size <= JOIN:
        for part in msg:
            head += part
        return (head,)
    return (head,) + msg


def topic_matches(pattern, topic):
    """Whole-level MQTT filter match ('+' one level, '#' the rest)."""
    p = pattern.split("/")
    t = topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)


def _print_log(level, msg):
    print("[%s] %s" % (level, msg))


class MQTT:
    def __init__(self, config, client_id, status_topic):
        broker = config["broker"]
        opts = config["mqtt"]
        self._broker = broker
        self._wifi = config.get("wifi") or {}
        self._client_id = client_id
        self.status_topic = status_topic
        self._keepalive = max(3, int(opts.get("keepalive_s", 30)))
        self._ping_ms = self._keepalive * 1000 // 3
        self._resp_ms = max(500, self._ping_ms // 2)
        self._backoff_max = int(opts.get("backoff_max_s", 60))
        self._broker_tries = max(1, int(opts.get("broker_tries", 3)))
        self._timeout_ms = int(opts.get("timeout_s", 10)) * 1000
        self.max_msg = int(opts.get("max_msg", 4096))
        # First, while the heap is young: every incoming message lands here.
        self._buf = bytearray(max(self.max_msg, 256))
        self._mv = memoryview(self._buf)
        self._small = memoryview(bytearray(4))  # a fixed header byte, a short body
        self._plain = bool(broker.get("insecure_plain_mqtt"))
        self._ctx = None
        self._subs = []  # [filter, qos, [callbacks]]
        self.on_connect = []  # functions run after every (re)connect
        self.before_connect = None  # coroutine function run before each TLS connect
        self.before_blocking = []  # coroutine functions awaited by blocking_ok()
        self.up = asyncio.Event()  # connected, subscribed, ONLINE published
        self._down = asyncio.Event()
        self._stream = None
        self._tasks = []  # the connection's reader and keepalive
        self._dropped = []  # streams of dropped connections, for _close()
        self._wifi_asked = False  # connect() called: the driver rejoins by itself
        self._gen = 0  # connection generation: stale tasks notice a reconnect
        self._wlock = asyncio.Lock()
        self._pid = 0
        self._waiting = {}  # pid -> Event, for PUBACK / SUBACK
        self._acked = set()
        self._recent = []  # ids of QoS 1 messages received, to drop DUP repeats
        self._ping_at = None
        # last PUBLISH read: the broker's answers to us queue behind the ones it sends
        self._pub_at = ticks_ms()
        self.rtt_at = ticks_ms()  # last answer from the broker to one of our packets
        self.connected_at = None
        self.connects = 0
        self.log = _print_log
        self._wlan = network.WLAN(network.STA_IF)
        self._stopped = False
        if not self._plain:
            # Parse the CA while the heap is young and unfragmented; retried on connect.
            try:
                self._tls()
            except (OSError, ValueError) as err:
                self.log("error", "CA certificate %s: %r" % (broker.get("ca", "ca.pem"), err))
        self._live_subs = 0

    # --- public API ---------------------------------------------------------

    def subscribe(self, topic, callback, qos=0):
        """Register a callback(topic, payload, retained); kept across reconnects."""
        for sub in self._subs:
            if sub[0] == topic:
                sub[1] = max(sub[1], qos)
                sub[2].append(callback)
                return
        self._subs.append([topic, qos, [callback]])
        if self.up.is_set():
            self._live_subs += 1
            asyncio.create_task(self._subscribe_live(topic, qos))

    async def subscribed(self):
        """Wait until subscriptions made while connected are confirmed."""
        while self._live_subs:
            await asyncio.sleep_ms(20)

    async def publish(self, topic, msg, retain=False, qos=0):
        """Publish once connected; QoS 1 returns when the broker acknowledged it.
        `msg`: str, a bytes-like, or a tuple of them sent one after the other (a reply's
        header and its data, not joined into a copy); kept as is until this returns."""
        if isinstance(msg, str):
            msg = msg.encode()
        if not isinstance(msg, tuple):
            msg = (msg,)
        if qos == 0:
            while True:
                await self.up.wait()
                gen = self._gen
                try:
                    await self._send(_publish_parts(topic, msg, retain, 0, 0, False))
                    return
                except OSError as err:
                    self._drop(gen, "publish failed: %r" % err)
        while len(self._waiting) >= MAX_INFLIGHT:
            await asyncio.sleep_ms(20)
        pid = self._next_pid()
        dup = False
        tries = 0
        while True:
            await self.up.wait()
            gen = self._gen
            try:
                await self._request(pid, _publish_parts(topic, msg, retain, 1, pid, dup))
                return
            except OSError as err:
                dup = True
                tries += 1
                # Retransmit with DUP; a broker that keeps ignoring us is dropped.
                if tries >= 3:
                    tries = 0
                    self._drop(gen, "no PUBACK: %r" % err)

    async def blocking_ok(self):
        """Wait before a step that blocks the whole loop (DNS lookup, TLS handshake, NTP):
        nothing could end a relay pulse meanwhile, not even a machine.Timer (the ESP32
        runs its callbacks between bytecodes), so such steps wait for the pulse to end."""
        for wait in self.before_blocking:
            await wait()

    def healthy(self):
        """True while the broker answers our packets (the watchdog feeds on this)."""
        return (
            self.up.is_set() and ticks_diff(ticks_ms(), self.rtt_at) <= self._ping_ms + self._resp_ms + 1000
        )

    async def disconnect(self):
        """Planned disconnect: OFFLINE first (a clean DISCONNECT discards the Will).
        A planned reset follows (mgmt, fwupdate, node): it is not counted as a crash."""
        bootstate.planned()
        self._stopped = True
        if self.up.is_set():
            gen = self._gen
            try:
                await self._status(OFFLINE)
                await self._send((b"\xe0\x00",))
            except (OSError, asyncio.TimeoutError) as err:
                self.log("warning", "planned disconnect: %r" % err)
            self._drop(gen, None)
        await self._close()

    async def run(self):
        """Keep the connection up forever: broker first, then WiFi."""
        fails = 0
        delay = 1
        while not self._stopped:
            try:
                if not self._wlan.isconnected():
                    await self._wifi_connect()
                if self.before_connect:
                    await self.before_connect()
                await self._connect()
                fails = 0
                started = ticks_ms()
                await self._down.wait()
                await self._close()
                if ticks_diff(ticks_ms(), started) > self._keepalive * 1000:
                    delay = 1
            except (OSError, ValueError, MemoryError, asyncio.TimeoutError) as err:
                # mbedtls reports a certificate that does not verify as ValueError.
                # Out of heap: retry after a collection; the watchdog is the last resort.
                fails += 1
                self._drop(self._gen, None)
                await self._close()
                level = "error" if isinstance(err, (ValueError, MQTTError, MemoryError)) else "warning"
                self.log(
                    level,
                    "MQTT connection to %s:%s failed (%d): %r"
                    % (self._broker["host"], self._broker.get("port", 8883), fails, err),
                )
                if fails % self._broker_tries == 0:
                    await self._wifi_reconnect()
            if self._stopped:
                break
            gc.collect()
            await asyncio.sleep_ms(delay * 1000 + random.getrandbits(8))
            delay = min(delay * 2, self._backoff_max)

    # --- WiFi ---------------------------------------------------------------

    async def _wifi_joined(self):
        wlan = self._wlan
        start = ticks_ms()
        while not wlan.isconnected():
            if ticks_diff(ticks_ms(), start) > self._timeout_ms * 2:
                return False
            await asyncio.sleep_ms(200)
        offload.forget()  # a new association: look the broker up again
        self.log("info", "WiFi: connected, %s" % (wlan.ifconfig()[0],))
        return True

    async def _wifi_connect(self):
        wlan = self._wlan
        wlan.active(True)
        if self._wifi_asked:
            # The driver is rejoining by itself; connect() now would raise "Wifi
            # Internal Error". Give it time, then start over.
            if await self._wifi_joined():
                return
            self._wifi_disconnect()
            await asyncio.sleep_ms(500)
        self.log("info", "WiFi: connecting to %s" % self._wifi.get("ssid"))
        wlan.connect(self._wifi.get("ssid"), self._wifi.get("password"))
        self._wifi_asked = True
        if not await self._wifi_joined():
            raise OSError("WiFi did not connect")

    def _wifi_disconnect(self):
        self._wifi_asked = False
        try:
            self._wlan.disconnect()
        except OSError as err:
            self.log("warning", "WiFi disconnect: %r" % err)

    async def _wifi_reconnect(self):
        self.log("warning", "broker unreachable %d times: reconnecting WiFi" % self._broker_tries)
        offload.forget()
        self._wifi_disconnect()
        await asyncio.sleep_ms(500)
        try:
            await self._wifi_connect()
        except OSError as err:
            self.log("warning", "WiFi: %r" % err)

    # --- connection ---------------------------------------------------------

    def _tls(self):
        if self._ctx is None:
            import tls

            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = tls.CERT_REQUIRED
            with open(self._broker.get("ca", "ca.pem")) as f:
                ctx.load_verify_locations(f.read())
            self._ctx = ctx
            gc.collect()
        return self._ctx

    async def _connect(self):
        b = self._broker
        host = b["host"]
        port = int(b.get("port", 1883 if self._plain else 8883))
        await self.blocking_ok()
        gc.collect()
        if self._plain:
            self.log(
                "warning",
                "MQTT without TLS (insecure_plain_mqtt): passwords and commands travel in clear text",
            )
            ssl = hostname = None
        else:
            ssl = self._tls()
            hostname = b.get("server_hostname") or host
        addr = await offload.address(host, port, self._timeout_ms)
        reader = writer = self._stream = self._open(addr, ssl, hostname)
        # as asyncio.open_connection does: lwIP refuses a write (EINPROGRESS, which TLS
        # does not retry) until the TCP connect is done; a dead address times out here
        await asyncio.wait_for_ms(writable(writer.s), self._timeout_ms)
        gc.collect()
        flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, Will, Will QoS 1, Will retained
        body = b"\x00\x04MQTT\x04" + bytes([0]) + struct.pack("!H", self._keepalive) + _field(self._client_id)
        body += _field(self.status_topic) + _field(OFFLINE)
        if b.get("user"):
            flags |= 0x80
            body += _field(b["user"])
            if b.get("password") is not None:
                flags |= 0x40
                body += _field(b["password"])
        body = body[:7] + bytes([flags]) + body[8:]
        await self._write(writer, (_packet(0x10, body),))
        ack = await asyncio.wait_for_ms(reader.readexactly(4), self._timeout_ms)
        if ack[0] != 0x20:
            raise MQTTError("no CONNACK")
        if ack[3]:
            raise MQTTError("broker refused: %s" % _CONNACK_ERRORS.get(ack[3], ack[3]))
        self._gen += 1
        gen = self._gen
        self._down = asyncio.Event()
        self.rtt_at = self._pub_at = ticks_ms()
        self._ping_at = None
        self._recent = []
        self._tasks = [
            asyncio.create_task(self._reader(reader, gen)),
            asyncio.create_task(self._keepalive_task(gen)),
        ]
        for sub in self._subs:
            await self._subscribe_once(sub[0], sub[1])
        await self._status(ONLINE)
        self.connects += 1
        self.connected_at = ticks_ms()
        self.up.set()
        self.log("info", "MQTT connected to %s:%d (connect %d)" % (host, port, self.connects))
        for hook in self.on_connect:
            hook()

    def _open(self, addr, ssl, hostname):
        # asyncio.open_connection, but the socket is ours from the start: closed on
        # every failure, and no name lookup on the loop.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect(addr)
            except OSError as err:
                if err.errno != EINPROGRESS:
                    raise
            if ssl:
                sock = ssl.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
                sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return asyncio.StreamWriter(sock)

    async def _status(self, payload):
        pid = self._next_pid()
        await self._request(pid, _publish_parts(self.status_topic, (payload,), True, 1, pid, False))

    async def _close(self):
        # The run loop closes what a drop left: the tasks first (they wait on the
        # socket), then the socket with its TLS buffers.
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._stream is not None:
            self._dropped.append(self._stream)
            self._stream = None
        while self._dropped:
            try:
                await self._dropped.pop().wait_closed()
            except OSError:
                pass

    def _drop(self, gen, reason):
        """Close connection `gen` (if it is still the current one)."""
        if gen != self._gen:
            return
        if reason:
            self.log("warning", "MQTT connection lost: %s" % reason)
        self.up.clear()
        if self._stream is not None:
            self._dropped.append(self._stream)  # closed by the run loop
            self._stream = None
        self._gen += 1
        for ev in self._waiting.values():
            ev.set()
        self._down.set()

    async def _write(self, writer, parts):
        async with self._wlock:
            for part in parts:
                if part:
                    # Copied only if the socket cannot take it now, and then drained
                    # before the next part: after a partial write mbedtls_ssl_write()
                    # must be given the same bytes again, not those and the next part.
                    writer.write(part)
                    await asyncio.wait_for_ms(writer.drain(), self._timeout_ms)

    async def _send(self, parts):
        stream = self._stream
        if stream is None:
            raise OSError("not connected")
        gen = self._gen
        try:
            await self._write(stream, parts)
        except (OSError, MemoryError, asyncio.TimeoutError) as err:
            # A packet cut short leaves the stream out of step: this connection is done
            # (a QoS 1 publish goes again, with DUP, on the next one).
            self._drop(gen, "write: %r" % err)
            if isinstance(err, OSError):
                raise
            raise OSError(ENOMEM if isinstance(err, MemoryError) else ETIMEDOUT)

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _request(self, pid, parts):
        """Send a packet (its parts) that the broker acknowledges with `pid`; OSError if
        it does not."""
        ev = asyncio.Event()
        self._waiting[pid] = ev
        try:
            await self._send(parts)
            while True:
                try:
                    await asyncio.wait_for_ms(ev.wait(), self._timeout_ms)
                    break
                except asyncio.TimeoutError:
                    # late only when no message arrives: it may queue behind those
                    if ticks_diff(ticks_ms(), self._pub_at) >= self._timeout_ms:
                        raise OSError("no acknowledgement")
            if pid not in self._acked:
                raise OSError("connection lost")
        finally:
            self._waiting.pop(pid, None)
            self._acked.discard(pid)

    async def _subscribe_once(self, topic, qos):
        pid = self._next_pid()
        await self._request(pid, (_packet(0x82, struct.pack("!H", pid) + _field(topic) + bytes([qos])),))

    async def _subscribe_live(self, topic, qos):
        gen = self._gen
        try:
            await self._subscribe_once(topic, qos)
        except OSError as err:
            self._drop(gen, "subscribe failed: %r" % err)  # the reconnect subscribes it
        finally:
            self._live_subs -= 1

    async def _keepalive_task(self, gen):
        while gen == self._gen:
            await asyncio.sleep_ms(250)
            if gen != self._gen:
                return
            now = ticks_ms()
            if self._ping_at is not None:
                # Late only when no message arrives: behind a burst of them (an
                # image's chunks) the PINGRESP comes once they are read.
                if (
                    ticks_diff(now, self._ping_at) > self._resp_ms
                    and ticks_diff(now, self._pub_at) > self._resp_ms
                ):
                    self._drop(gen, "no PINGRESP within %d ms" % self._resp_ms)
                    return
            elif ticks_diff(now, self.rtt_at) >= self._ping_ms:
                self._ping_at = now
                try:
                    await self._send((b"\xc0\x00",))
                except OSError as err:
                    self._drop(gen, "ping failed: %r" % err)
                    return

    async def _fill(self, reader, mv):
        # exactly len(mv) bytes from the stream into mv: no allocation but the views
        got = 0
        n = len(mv)
        while got < n:
            k = await reader.readinto(mv[got:] if got else mv)
            if k is None:
                continue  # poll said readable, TLS has no whole record yet
            if not k:
                raise EOFError
            got += k

    async def _skip(self, reader, n):
        while n:
            k = min(n, len(self._mv))
            await self._fill(reader, self._mv[:k])
            n -= k

    async def _reader(self, reader, gen):
        small = self._small
        one = small[:1]
        try:
            while gen == self._gen:
                await self._fill(reader, one)
                head = small[0]
                size = 0
                shift = 0
                while True:
                    await self._fill(reader, one)
                    byte = small[0]
                    size |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                    if shift > 21:
                        raise MQTTError("bad packet length")
                kind = head & 0xF0
                if kind == 0x30:
                    self._pub_at = ticks_ms()
                    await self._on_publish(reader, head, size, gen)
                    continue
                if size > len(small):
                    await self._skip(reader, size)  # nothing we asked for
                    continue
                body = small[:size]
                await self._fill(reader, body)
                if kind in (0x40, 0x90) and size >= 2:  # PUBACK, SUBACK
                    pid = small[0] << 8 | small[1]
                    self.rtt_at = ticks_ms()
                    if kind == 0x90 and size > 2 and small[2] == 0x80:
                        self.log("error", "MQTT: broker refused a subscription (pid %d)" % pid)
                    ev = self._waiting.get(pid)
                    if ev is not None:
                        self._acked.add(pid)
                        ev.set()
                elif kind == 0xD0:  # PINGRESP
                    self.rtt_at = ticks_ms()
                    self._ping_at = None
        except (OSError, EOFError, MQTTError) as err:
            self._drop(gen, "read: %r" % err)
        except MemoryError as err:
            # Out of heap in the middle of a packet: the stream is out of step now.
            # Reconnect with a collected heap rather than crash the node.
            self._drop(gen, "read: %r" % err)
            gc.collect()
        except Exception as err:  # a bug must not leave a dead connection behind
            self._drop(gen, "reader error: %r" % err)
            raise

    async def _on_publish(self, reader, head, size, gen):
        small = self._small
        await self._fill(reader, small[:2])
        n = small[0] << 8 | small[1]
        size -= n + 2
        if n > len(self._buf) or size < 0:
            raise MQTTError("bad PUBLISH")
        await self._fill(reader, self._mv[:n])
        topic = str(self._mv[:n], "utf-8")
        qos = (head >> 1) & 3
        pid = 0
        if qos:
            await self._fill(reader, small[:2])
            pid = small[0] << 8 | small[1]
            size -= 2
            if size < 0:
                raise MQTTError("bad PUBLISH")
        total = size
        msg = None
        if size > self.max_msg:
            await self._skip(reader, size)  # not buffered
        else:
            msg = self._mv[:size]
            await self._fill(reader, msg)
        if qos:
            await self._send((b"\x40\x02" + struct.pack("!H", pid),))
            if head & 0x08 and pid in self._recent:
                return  # a DUP repeat of a message we already delivered
            self._recent.append(pid)
            if len(self._recent) > 8:
                self._recent.pop(0)
        if msg is None:
            self.log(
                "warning",
                "MQTT: dropped a message of %d bytes on %s (limit %d)" % (total, topic, self.max_msg),
            )
            return
        retained = bool(head & 0x01)
        # Handlers copy what they keep: the next message overwrites the buffer.
        for sub in self._subs:
            if topic_matches(sub[0], topic):
                for callback in sub[2]:
                    try:
                        callback(topic, msg, retained)
                    except Exception as err:
                        self.log("error", "handler for %s failed: %r" % (topic, err))
        msg = None
        if total > 1024:
            gc.collect()
