# Logging to <base>/log/<level>/<node>. Lines wait in a bounded buffer while the
# broker is unreachable; when it is full the oldest line of the lowest level goes
# first, so a burst of debug output cannot push out an error.
import asyncio

import topics

LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_LINE = 1024

_buf = []  # (level index, text)
ENTRY = 32  # bytes of bookkeeping per buffered line, counted against buffer_bytes
_bytes = 0
_dropped = [0, 0, 0, 0, 0]
_max_lines = 32
_max_bytes = 3072
_min = 1
_wake = asyncio.Event()
_topics = None


def configure(cfg):
    global _max_lines, _max_bytes, _min
    _max_lines = max(4, int(cfg.get("buffer_lines", _max_lines)))
    _max_bytes = max(512, int(cfg.get("buffer_bytes", _max_bytes)))
    level = str(cfg.get("level", "info")).lower()
    _min = LEVELS.index("warning" if level == "warn" else level) if level in LEVELS or level == "warn" else 1


def log(level, msg):
    global _bytes
    if level == "warn":
        level = "warning"
    n = LEVELS.index(level) if level in LEVELS else 1
    if not isinstance(msg, str):
        msg = str(msg)
    if len(msg) > MAX_LINE:
        msg = msg[: MAX_LINE - 3] + "..."
    print("[%s] %s" % (LEVELS[n], msg))
    if n < _min:
        return
    _buf.append((n, msg))
    _bytes += len(msg) + ENTRY
    while len(_buf) > _max_lines or _bytes > _max_bytes:
        lowest = 0
        for i in range(1, len(_buf)):
            if _buf[i][0] < _buf[lowest][0]:
                lowest = i
        gone = _buf.pop(lowest)
        _bytes -= len(gone[1]) + ENTRY
        _dropped[gone[0]] += 1
    _wake.set()


def debug(msg):
    log("debug", msg)


def info(msg):
    log("info", msg)


def warning(msg):
    log("warning", msg)


def error(msg):
    log("error", msg)


def critical(msg):
    log("critical", msg)


def pending():
    return len(_buf), _bytes


async def _pump(mqtt):
    global _bytes
    while True:
        if not _buf:
            _wake.clear()
            await _wake.wait()
            continue
        await mqtt.up.wait()
        lost = sum(_dropped)
        if lost:
            counts = ", ".join("%d %s" % (c, LEVELS[i]) for i, c in enumerate(_dropped) if c)
            for i in range(5):
                _dropped[i] = 0
            log("warning", "log buffer full: dropped %d lines (%s)" % (lost, counts))
        n, msg = _buf.pop(0)
        _bytes -= len(msg) + ENTRY
        # QoS 1: a line handed over is retransmitted until the broker has it.
        await mqtt.publish(_topics[n], msg, qos=1)


def start(mqtt, config):
    global _topics
    _topics = [topics.log_topic(config, level) for level in LEVELS]
    configure(config.get("log") or {})
    mqtt.log = log
    asyncio.create_task(_pump(mqtt))
