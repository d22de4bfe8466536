# HMAC-SHA256 for signed commands (MicroPython has hashlib.sha256 but no hmac).
# Signature: hex HMAC keyed with the node's key over
# "<node_id>\n<cmd>\n<ts>\n<nonce>\n<arg>" (docs/protocol.md, "Signed commands").
# Replays across a reboot (the nonce table is in RAM): a command signed before this
# boot is refused, and so is one at or below the newest timestamp accepted ahead of
# the node's clock (kept on flash; written only when a sender's clock runs ahead).
import json
import time
from binascii import hexlify
from hashlib import sha256

# Ports whose epoch is 2000 report Unix time minus this.
EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0
CLOCK_SET_AFTER = 1700000000
AHEAD = "sign_ts"
_boot_ms = None  # this boot in Unix milliseconds (whole numbers: ESP32 floats are 32-bit)


def read_int(path):
    """A number kept in a file on flash; 0 if there is none."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


_floor = _ahead = read_int(AHEAD)


def clock_synced():
    """After NTP set the clock (node.py): fix the boot time the first time."""
    global _boot_ms
    if _boot_ms is None and unix_time() >= CLOCK_SET_AFTER:
        import bootstate  # uptime right past ticks_ms wraps: NTP may come days late

        now_ms = time.time_ns() // 1000000 + EPOCH * 1000
        _boot_ms = now_ms - bootstate.uptime_ms()


def _note_ahead(ts):
    global _ahead
    if ts > _ahead:
        _ahead = ts
        try:
            with open(AHEAD, "w") as f:
                f.write(str(ts))
        except OSError:
            pass


def hmac_sha256(key, msg):
    if len(key) > 64:
        key = sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def signature(key, target, cmd, ts, nonce, arg=""):
    text = "%s\n%s\n%d\n%s\n%s" % (target, cmd, ts, nonce, arg)
    return hexlify(hmac_sha256(key.encode(), text.encode())).decode()


def same(a, b):
    """Compare without an early exit, so timing tells nothing about the signature."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= ord(x) ^ ord(y)
    return diff == 0


def unix_time():
    return time.time() + EPOCH


class Refused(ValueError):
    pass


def safe_nonce(nonce):
    """A nonce fit to echo in a reply: 1-32 hex digits."""
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= 32:
        return False
    for ch in nonce:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


class Verifier:
    """Checks signed commands: signature, age, nonce; bounded memory."""

    def __init__(self, key, target, max_skew_s=30, max_nonces=32):
        if not key:
            raise ValueError("no command key configured")
        self._key = key
        self._target = target
        self.max_skew = max_skew_s
        self._max = max_nonces
        self._seen = []  # [nonce, accepted at]
        self.nonce = None  # of the last command checked, if it had a safe one

    def check(self, payload, retained, now=None, keep=True):
        """Return (cmd, arg) of an acceptable command or raise Refused(reason).
        keep=False checks without taking the nonce (it is checked again later)."""
        self.nonce = None
        if retained:
            raise Refused("retained")
        if len(payload) > 512:
            raise Refused("too large")
        try:
            data = json.loads(payload)
        except ValueError:
            raise Refused("not JSON")
        if not isinstance(data, dict):
            raise Refused("not a JSON object")
        cmd = data.get("cmd")
        ts = data.get("ts")
        nonce = data.get("nonce")
        sig = data.get("sig")
        arg = data.get("arg", "")
        data = None
        if safe_nonce(nonce):
            self.nonce = nonce
        if not isinstance(sig, str) or not sig:
            raise Refused("unsigned")
        if not (isinstance(cmd, str) and isinstance(nonce, str) and isinstance(arg, str)):
            raise Refused("malformed")
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise Refused("malformed timestamp")
        if not same(signature(self._key, self._target, cmd, ts, nonce, arg), sig):
            raise Refused("bad signature")
        if now is None:
            now = unix_time()
        if now < CLOCK_SET_AFTER or _boot_ms is None:
            raise Refused("clock not set (no NTP yet)")
        if abs(now - ts) > self.max_skew:
            raise Refused("stale (%d s from the node's clock)" % (now - ts))
        if ts * 1000 < _boot_ms or ts <= _floor:
            raise Refused("signed before the node's last boot")
        # A nonce older than twice the window is refused as stale anyway.
        self._seen = [s for s in self._seen if now - s[1] <= 2 * self.max_skew]
        for s in self._seen:
            if s[0] == nonce:
                raise Refused("replayed")
        if len(self._seen) >= self._max:
            raise Refused("too many commands in %d s" % (2 * self.max_skew))
        if not keep:
            return cmd, arg
        self._seen.append([nonce, now])
        if ts > now:
            _note_ahead(ts)  # accepted before our clock got there: may outlive a reboot
        return cmd, arg
