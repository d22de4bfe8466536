# Reachability: the node, on the server's network segment, checks a TCP port on the
# server every interval_s (host, port and interval served by HA) and publishes the
# result on <base>/node/<node>/reach: ON (the port answered) or OFF (no answer, which
# proves nothing). Never blocks the loop: a numeric address only (no DNS), a
# non-blocking connect, bounded by timeout_ms.
import asyncio
import socket
from errno import EAGAIN, EINPROGRESS

import log
import topics
from mqtt import writable

TIMEOUT_MS = 5000  # a port that takes longer to answer counts as no answer
MIN_INTERVAL_S = 1


def _address(host, port):
    parts = host.split(".") if isinstance(host, str) else ()
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise ValueError("host %r is not an IPv4 address (no name lookups)" % str(host)[:64])
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError("port %r is not 1-65535" % (port,))
    return socket.getaddrinfo(host, port)[0][-1]  # numeric: answered at once


class Reach:
    def __init__(self, mqtt, config):
        cfg = config["reach"]
        self.addr = _address(cfg.get("host"), cfg.get("port"))
        self.interval_ms = max(MIN_INTERVAL_S, int(cfg.get("interval_s", 30))) * 1000
        self.timeout_ms = min(int(cfg.get("timeout_ms", TIMEOUT_MS)), self.interval_ms)
        self.target = "%s:%d" % (cfg["host"], cfg["port"])
        self.topic = topics.node_topic(config, "reach")
        self._mqtt = mqtt
        self.answered = None
        asyncio.create_task(self._run())

    async def check(self):
        """Whether the port accepts a connection within timeout_ms."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect(self.addr)
            except OSError as err:
                if err.errno != EINPROGRESS:
                    return False  # refused at once
            # a refused connect wakes the writer too: the read below tells them apart
            await asyncio.wait_for_ms(writable(sock), self.timeout_ms)
            try:
                sock.recv(1)  # a banner, or closed by the server: it answered
            except OSError as err:
                return err.errno == EAGAIN  # connected, nothing sent yet
            return True
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            sock.close()

    async def _run(self):
        while True:
            await self._mqtt.up.wait()
            answered = await self.check()
            if answered != self.answered:
                log.info("reach: %s %s" % (self.target, "answers" if answered else "does not answer"))
                self.answered = answered
            await self._mqtt.publish(self.topic, "ON" if answered else "OFF")
            await asyncio.sleep_ms(self.interval_ms)


def start(mqtt, config):
    try:
        return Reach(mqtt, config)
    except (ValueError, TypeError) as err:
        log.error("reach refused: %s" % err)
        return None
