"""The agent's MQTT session: heartbeat, state, network reports, logs and commands.

paho runs the connection in its own thread (reconnecting with backoff); everything
the agent decides happens on one asyncio loop, which paho's callbacks hand over to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from . import logind, network, replay
from .commands import Command, CommandError, Verifier
from .config import Config, tls_context
from .protocol import (
    ALIVE,
    DEAD,
    HEARTBEAT,
    NETWORK,
    OFFLINE,
    ONLINE,
    REBOOT,
    REFRESH,
    SHUTDOWN,
    SHUTTING_DOWN,
    STARTING,
    STATE,
    SYSTEM,
    log_topic,
    server_topic,
)

_LOGGER = logging.getLogger(__package__)
INSECURE_WARNING = (
    "TLS certificate verification is OFF (SMARTSERVER_TLS_INSECURE): "
    "anyone between this server and the broker can read and forge its messages"
)
KEEPALIVE = 60
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
PUBLISH_WAIT_S = 5.0
REFRESH_COALESCE_S = 0.2
MAX_QUEUED = 200
# MQTT log lines: at most this many per window, so a flood of refused commands
# cannot turn into a flood of log messages
LOG_BURST = 20
LOG_WINDOW_S = 10.0
# the commands on `system`: what each asks of logind
ACTIONS = {SHUTDOWN: logind.POWER_OFF, REBOOT: logind.REBOOT}
# how long recording an accepted command's nonce may take before the command is refused
RECORD_TIMEOUT_S = 3.0


class Client(paho.Client):
    """paho's client, remembering why the last connection attempt failed."""

    last_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        """Connect again; keep the error for the on_connect_fail callback."""
        try:
            return super().reconnect()
        except OSError as err:
            self.last_error = err
            raise


def probe(config: Config, timeout: float = 10) -> str | None:
    """Connect once and disconnect; return what went wrong, or None."""
    # its own client id: the running agent's session must not be taken over
    client = make_client(config, f"{config.client_id}-check")
    answer: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    try:
        client.connect(config.host, config.port, keepalive=int(timeout) + 5)
    except OSError as err:
        return f"cannot connect to {config.host}:{config.port}: {err}"
    try:
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
    finally:
        client.disconnect()
    if not answer:
        return f"no answer from the broker at {config.host}:{config.port}"
    return f"the broker refused the connection: {answer[0]}" if answer[0].is_failure else None


def make_client(config: Config, client_id: str | None = None) -> Client:
    """Return a TLS client with the agent's stable id and credentials; not connected yet."""
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or config.client_id,
        clean_session=True,
        protocol=paho.MQTTv311,
    )
    if config.username:
        client.username_pw_set(config.username, config.password)
    client.tls_set_context(tls_context(config))
    return client


class MqttLogHandler(logging.Handler):
    """Publishes the agent's own log lines on `<base>/log/<level>/<server>`."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(logging.INFO)
        self.agent = agent
        self.window_start = 0.0
        self.sent = 0
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Publish one line when connected, within the rate limit."""
        now = time.monotonic()
        if now - self.window_start > LOG_WINDOW_S:
            if self.dropped:
                self.agent.publish_log("warning", f"{self.dropped} log lines were not sent (rate limit)")
            self.window_start, self.sent, self.dropped = now, 0, 0
        if self.sent >= LOG_BURST:
            self.dropped += 1
            return
        self.sent += 1
        level = record.levelname.lower()
        self.agent.publish_log(level, self.format(record))


class Agent:
    """One server's agent: run() until SIGTERM/SIGINT."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.replay_path = config.data_dir / replay.REPLAY_FILE
        known = replay.load(self.replay_path, clock(), config.max_skew)
        self.verifier = Verifier(config.key, config.server_id, config.max_skew, known.seen, known.floor)
        self.recorder = replay.Recorder(self.replay_path, config.max_skew)
        self.state = STARTING
        self.report: network.Report | None = None
        self.client = make_client(config)
        self.client.will_set(self.topic(HEARTBEAT), DEAD, qos=1, retain=True)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._online_once = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._checking: asyncio.Task[None] | None = None
        self._refresh: asyncio.TimerHandle | None = None

    def topic(self, leaf: str) -> str:
        """Return this server's topic for `leaf`."""
        return server_topic(self.config.base, self.config.server_id, leaf)

    # publishing ------------------------------------------------------------------

    def publish(
        self, topic: str, payload: str, retain: bool = True, qos: int = 1
    ) -> paho.MQTTMessageInfo | None:
        """Publish while connected; a reconnect republishes everything anyway."""
        if not self.connected.is_set():
            return None
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_log(self, level: str, text: str) -> None:
        """Publish one log line for Home Assistant (QoS 0, never retained)."""
        self.publish(log_topic(self.config.base, level, self.config.server_id), text, retain=False, qos=0)

    def publish_status(self) -> list[paho.MQTTMessageInfo]:
        """Publish heartbeat, state and the last network report, retained."""
        beat = DEAD if self.state == SHUTTING_DOWN else ALIVE
        infos = [self.publish(self.topic(HEARTBEAT), beat), self.publish(self.topic(STATE), self.state)]
        if self.report is not None:
            infos.append(self.publish(self.topic(NETWORK), self.report.to_json()))
        return [info for info in infos if info is not None]

    def set_state(self, state: str) -> paho.MQTTMessageInfo | None:
        """Change and publish the state."""
        self.state = state
        return self.publish(self.topic(STATE), state)

    async def announce_down(self, state: str) -> None:
        """Publish `state` and DEAD, and wait until the broker has both.

        Only DEAD goes at QoS 1: its PUBACK proves the broker read everything sent
        before it on this connection, and a single PUBACK is not held back by the
        broker's Nagle (mosquitto's set_tcp_nodelay is off by default), which costs
        about 40 ms for each further one.
        """
        self.state = state
        self.publish(self.topic(STATE), state, qos=0)
        await self.wait_published([self.publish(self.topic(HEARTBEAT), DEAD)])

    async def wait_published(self, infos: list[paho.MQTTMessageInfo | None]) -> None:
        """Wait (briefly) until the broker acknowledged these messages."""

        def wait() -> None:
            for info in infos:
                if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    with contextlib.suppress(RuntimeError, ValueError):
                        info.wait_for_publish(PUBLISH_WAIT_S)

        await asyncio.get_running_loop().run_in_executor(None, wait)

    # paho callbacks (paho's thread): hand over to the loop ---------------------------

    def _call(self, func: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(func, *args)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            _LOGGER.error("the broker refused the connection: %s", reason)
            return
        # paho leaves Nagle on: each small publish after the PUBACK of a command
        # would wait ~40 ms for the broker's delayed ACK
        if isinstance(sock := client.socket(), socket.socket):  # SSLSocket is one
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(self.topic(SYSTEM), 1), (self.topic(REFRESH), 0)])
        self.connected.set()
        # publish from the loop: paho resends messages queued before the connection
        # was lost right after this callback, and they must not overwrite fresh ones
        self._call(self._connected)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        error = self.client.last_error
        _LOGGER.error(
            "cannot connect to the broker %s:%d: %s; retrying",
            self.config.host,
            self.config.port,
            error or "unknown error",
        )

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        if not self._stopping:
            _LOGGER.warning("lost the broker connection (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._call(self._message, msg.topic, msg.payload, bool(msg.retain))

    # the agent's behaviour (on the loop) -----------------------------------------------

    def _connected(self) -> None:
        if not self.connected.is_set():
            return
        self.publish_status()
        if not self._online_once:
            self._online_once = True
            _LOGGER.info(
                "connected to %s:%d as %s", self.config.host, self.config.port, self.config.client_id
            )
            if self.config.tls_insecure:
                self.publish_log("warning", INSECURE_WARNING)
            self._spawn(self._network_loop())
        else:
            _LOGGER.info("reconnected to the broker; state republished")

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self.topic(REFRESH):
            self._schedule_refresh()
        elif topic == self.topic(SYSTEM):
            self._command(topic, payload, retained)

    def _schedule_refresh(self) -> None:
        """Republish once for a burst of refresh requests, with a fresh network check."""
        if self._refresh is not None or self._loop is None:
            return

        def run() -> None:
            self._refresh = None
            self.publish_status()
            self._check_network()

        self._refresh = self._loop.call_later(REFRESH_COALESCE_S, run)

    def _command(self, topic: str, payload: bytes, retained: bool) -> None:
        if retained:
            _LOGGER.warning("refused command on %s: retained (commands are never retained)", topic)
            return
        try:
            command = self.verifier.verify(payload, self.clock())
        except CommandError as err:
            _LOGGER.warning("refused command on %s: %s", topic, err)
            return
        action = ACTIONS.get(command.cmd)
        if action is None:
            _LOGGER.warning("refused command on %s: unknown command %r", topic, command.cmd[:40])
        elif self.state == SHUTTING_DOWN:
            _LOGGER.warning("refused command on %s: a shutdown or reboot is already in progress", topic)
        else:
            previous, self.state = self.state, SHUTTING_DOWN  # now: a second command is refused
            self._spawn(self._go_down(topic, command, action, previous))

    async def _record(self) -> None:
        """Write the accepted nonces to disk; raise OSError or TimeoutError if that fails.

        In a daemon thread of its own, not the loop's executor: a disk that hangs must
        neither stall the loop nor keep the process from exiting on SIGTERM.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        snapshot = self.recorder.snapshot(replay.ReplayState(self.verifier.seen, self.verifier.floor))

        def settle(err: BaseException | None) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(err)

        def write() -> None:
            error: BaseException | None = None
            try:
                self.recorder.write(snapshot)
            except Exception as err:  # handed to the loop, which refuses the command
                error = err
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=write, name="replay-record", daemon=True).start()
        await asyncio.wait_for(done, RECORD_TIMEOUT_S)

    async def _go_down(self, topic: str, command: Command, action: logind.Action, previous: str) -> None:
        """Record the command, say SHUTTING_DOWN and DEAD, then ask logind to power off or reboot."""
        try:
            await self._record()
        except (OSError, TimeoutError) as err:
            self.verifier.forget(command.nonce)
            self.state = previous
            # wait_for's TimeoutError (an OSError too) has no message
            reason = str(err) or f"no answer within {RECORD_TIMEOUT_S:g} s"
            _LOGGER.error(
                "refused command on %s: cannot record it in %s (%s); without that record "
                "a replay after a restart would go unnoticed",
                topic,
                self.replay_path,
                reason,
            )
            return
        _LOGGER.warning("%s accepted: asking logind to %s", command.cmd, action.name)
        # a clean disconnect discards the Will: say DEAD ourselves first
        await self.announce_down(SHUTTING_DOWN)
        try:
            await logind.perform(action)
        except logind.LogindError as err:
            _LOGGER.error("%s failed: %s; staying online", action.name, err)
            self.set_state(ONLINE)
            self.publish(self.topic(HEARTBEAT), ALIVE)
            return
        _LOGGER.info("logind accepted %s; waiting for the system to stop", action.method)

    def _check_network(self) -> None:
        if self._checking is None or self._checking.done():
            self._checking = self._spawn(self._network_check())

    async def _network_check(self) -> None:
        config = self.config
        report = await asyncio.get_running_loop().run_in_executor(
            None, network.check, config.target, config.interfaces
        )
        if self.report is None or report.problems != self.report.problems:
            for problem in report.problems:
                _LOGGER.warning("network: %s", problem)
            if not report.problems and self.report is not None:
                _LOGGER.info("network: all checks pass again")
        self.report = report
        self.publish(self.topic(NETWORK), report.to_json())
        if self.state == STARTING:
            self.set_state(ONLINE)
            _LOGGER.info("online")

    async def _network_loop(self) -> None:
        while True:
            self._check_network()
            await asyncio.sleep(self.config.network_interval)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            if self.state != SHUTTING_DOWN:
                self.publish(self.topic(HEARTBEAT), ALIVE)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            _LOGGER.error("internal error: %r", err, exc_info=err)

    # lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Connect, serve until SIGTERM or SIGINT, then say OFFLINE and DEAD."""
        self._loop = loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        handler = MqttLogHandler(self)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _LOGGER.addHandler(handler)
        try:
            self.client.connect_async(self.config.host, self.config.port, KEEPALIVE)
            self.client.loop_start()
            self._spawn(self._heartbeat_loop())
            await stop.wait()
            _LOGGER.info("stopping: state OFFLINE")
            await self.announce_down(OFFLINE)
        finally:
            _LOGGER.removeHandler(handler)
            self._stopping = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.client.disconnect()
            self.client.loop_stop()
        return 0
