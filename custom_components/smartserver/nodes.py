"""ESP32 nodes over HA's MQTT: configuration serving, logs, availability and devices."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import mqtt
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from . import protocol
from .const import (
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_RATE_LIMIT,
    CONF_STORAGE,
    DEFAULT_EVENT_LEVEL,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_KB,
    DEFAULT_RATE_LIMIT,
    DEFAULT_STORAGE,
    DOMAIN,
    EVENT_LOG,
    ISSUE_NEW_NODES,
    LOGGER,
)
from .helpers import node_device_info, node_identifier, server_identifier
from .logs import GENERAL_LOG, LogFiles, LogLine, LogWriter
from .servers import ServerConfig, server_subentries
from .storage import ConfigFileError, Storage

if TYPE_CHECKING:
    from .coordinator import SmartServerConfigEntry

LEVEL_RANK: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
UNKNOWN_LEVEL: Final = "unknown"
UNKNOWN_RANK: Final = 20
# Characters of a message kept in HA states and events; the files get all of it.
MAX_HA_TEXT: Final = 255
# A node heard from this recently (or online) is not stale: its device stays.
STALE_AFTER_S: Final = 300
MAX_WARNED: Final = 200
REFRESH_PAYLOAD: Final = "REFRESH"
# Parsed log topics remembered (a hostile client could invent endless ones).
MAX_LOG_TOPICS: Final = 4096
# New node devices: this many at once, then NEW_NODES_PER_HOUR. Each brings a directory,
# a device_names.yaml entry, a device and 8 entities: a client that publishes under
# thousands of made-up ids (a broker without ACL) must not bury HA in devices.
NEW_NODES_BURST: Final = 200
NEW_NODES_PER_HOUR: Final = 60
# The repair issue about held-back nodes clears itself after this long without one.
NEW_NODES_QUIET_S: Final = 3600
MAX_HELD_BACK: Final = 10_000  # ids counted for the repair issue
# Shortest time between two state writes of one node's entities (see state_interval).
STATE_INTERVAL_S: Final = 1.0
# The node entities a server's agent gets for its log lines, on the server's device.
SERVER_LOG_KEYS: Final = frozenset({"log", "last_log", "errors", "criticals", "suppressed"})


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """The node-related options of the hub entry."""

    base: str
    storage: Path
    max_bytes: int
    backups: int
    event_level: str
    rate: float

    @property
    def state_interval(self) -> float:
        """Shortest time between two state writes of a node's entities.

        At most one a second even when more events are allowed: the recorder stores
        every write, and a flooding node must not flood the database.
        """
        return max(STATE_INTERVAL_S, 1 / self.rate)

    @property
    def event_rank(self) -> int:
        """Rank of the lowest level that becomes an HA event."""
        return LEVEL_RANK[self.event_level]

    @classmethod
    def from_entry(cls, hass: HomeAssistant, entry: SmartServerConfigEntry) -> NodeOptions:
        """Read the options, with defaults for entries made before they existed."""
        options = entry.options
        return cls(
            base=entry.runtime_data.base_topic,
            storage=Path(hass.config.path(options.get(CONF_STORAGE, DEFAULT_STORAGE))),
            max_bytes=int(options.get(CONF_LOG_MAX_KB, DEFAULT_LOG_MAX_KB)) * 1024,
            backups=int(options.get(CONF_LOG_BACKUPS, DEFAULT_LOG_BACKUPS)),
            event_level=options.get(CONF_EVENT_LEVEL, DEFAULT_EVENT_LEVEL),
            rate=float(options.get(CONF_RATE_LIMIT, DEFAULT_RATE_LIMIT)),
        )


@dataclass(slots=True)
class TokenBucket:
    """Tokens that refill at a rate up to a burst; `take` spends one if there is one.

    By default last refilled at monotonic time 0 (long ago): the first take finds it full.
    """

    tokens: float = 0.0
    refilled: float = 0.0

    def take(self, now: float, rate: float, burst: float) -> bool:
        """Spend a token at `now` (monotonic seconds); False if none is left."""
        self.tokens = min(burst, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class Node:
    """What HA knows about one node."""

    node_id: str
    name: str
    device_id: str | None = None
    online: bool | None = None
    # Whether going offline was logged: logged once, and its return once.
    offline_logged: bool = False
    last_level: str | None = None
    last_message: str | None = None
    last_log_ts: float | None = None
    errors: int = 0
    criticals: int = 0
    suppressed: int = 0
    served_at: float | None = None
    served_hash: str | None = None
    wait_s: float | None = None
    seen: float = 0.0
    events: TokenBucket = field(default_factory=TokenBucket)  # the event rate limit
    written: float = 0.0
    write_timer: CALLBACK_TYPE | None = field(default=None, repr=False)


@dataclass(slots=True)
class Answer:
    """A configuration ready to publish."""

    name: str
    payload: str
    digest: str
    components: list[tuple[str, str]]
    warnings: list[str]


def prepare_answer(storage: Storage, node_id: str) -> Answer:
    """Read and serialise a node's configuration (blocking: run in an executor)."""
    loaded = storage.load_config(node_id)
    payload = json.dumps(loaded.config, separators=(",", ":"))
    components: list[tuple[str, str]] = []
    for name, value in loaded.components():
        if not protocol.COMPONENT_PATTERN.fullmatch(name) or name == "set":
            loaded.warnings.append(
                f"component {name[:64]!r} cannot be a topic level: left out of chunked answers"
            )
            continue
        components.append((name, json.dumps(value, separators=(",", ":"))))
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return Answer(loaded.name, payload, digest, components, loaded.warnings)


def prepare_answers(storage: Storage, node_ids: list[str]) -> list[Answer | Exception]:
    """Prepare several answers in one executor job; a failure is returned in its place."""
    results: list[Answer | Exception] = []
    for node_id in node_ids:
        try:
            results.append(prepare_answer(storage, node_id))
        except Exception as err:  # raised again in that request's own task
            results.append(err)
    return results


def node_id_of_device(device: dr.AnyDeviceEntry) -> str | None:
    """Return the node id of a node's device, or None for other devices."""
    for domain, ident in device.identifiers:
        if domain == DOMAIN and ident.startswith("node_") and protocol.valid_id(ident[5:]):
            return ident[5:]
    return None


def _text(payload: Any) -> str:
    if isinstance(payload, (bytes, bytearray)):
        return payload.decode("utf-8", "replace")
    return str(payload)


class NodeHub:
    """Subscriptions, node state and the log writer of one hub entry."""

    def __init__(self, hass: HomeAssistant, entry: SmartServerConfigEntry, options: NodeOptions) -> None:
        """Prepare; nothing is subscribed or written until async_start."""
        self.hass = hass
        self.entry = entry
        self.options = options
        self.storage = Storage(options.storage)
        # Each agent logs under its server id: those lines belong to the server, not a node.
        self.servers: dict[str, ServerConfig] = {}
        for subentry in server_subentries(entry):
            config = ServerConfig.from_subentry(subentry)
            self.servers[config.server_id] = config
        self.server_logs = {sid: Node(sid, config.name) for sid, config in self.servers.items()}
        tz = dt_util.get_default_time_zone()
        files = LogFiles(
            self.storage, options.max_bytes, options.backups, tz, servers=frozenset(self.servers)
        )
        self.writer = LogWriter(hass, files)
        self.writer.names_listener = self._names_seen
        self.nodes: dict[str, Node] = {}
        self.signal_new_node = f"{DOMAIN}_{entry.entry_id}_new_node"
        # node entities are unavailable while HA's MQTT client is disconnected
        self.mqtt_connected = mqtt.is_connected(hass)
        self.signal_connection = f"{DOMAIN}_{entry.entry_id}_mqtt_connection"
        self._answers: dict[str, asyncio.Task[None]] = {}
        # Requests of one event-loop turn, prepared together in one executor job.
        self._to_prepare: list[tuple[str, asyncio.Future[Answer]]] = []
        # Log messages of one event-loop turn: (topic, payload, received), handled together.
        self._log_queue: list[tuple[str, Any, float]] = []
        self._log_topics: dict[str, tuple[str, str] | None] = {}
        self._warned: set[str] = set()
        # Budget for new node devices (a token bucket), and the ids held back meanwhile.
        self._new_nodes = TokenBucket(NEW_NODES_BURST, time.monotonic())
        self._held_back: set[str] = set()
        self._held_back_timer: CALLBACK_TYPE | None = None
        self._held_back_last = 0.0  # when a node was last held back (time.time())
        self._stopped = False
        self._unsub_subscribed: Any = None
        registry = dr.async_get(hass)
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
            if (node_id := node_id_of_device(device)) is None:
                continue
            if node_id in self.servers:
                # made from the agent's log lines before its server was added
                LOGGER.info(
                    "Removed node device %s: the id is a server's, its agent's lines go to the server",
                    node_id,
                )
                registry.async_update_device(device.id, remove_config_entry_id=entry.entry_id)
                continue
            self.nodes[node_id] = Node(node_id, device.name or node_id, device.id)

    def signal(self, node_id: str) -> str:
        """Dispatcher signal: the node's state changed."""
        return f"{DOMAIN}_{self.entry.entry_id}_node_{node_id}"

    def event_signal(self, node_id: str) -> str:
        """Dispatcher signal: the node logged a line that becomes an event."""
        return f"{DOMAIN}_{self.entry.entry_id}_log_{node_id}"

    async def async_start(self) -> None:
        """Subscribe, and send `refresh` once the status subscription is active."""
        hass, base, entry = self.hass, self.options.base, self.entry
        registry = dr.async_get(hass)
        for server_id, node in self.server_logs.items():
            # the platforms made the server's device: its events carry its id
            if device := registry.async_get_device_by_identifier(
                server_identifier(server_id), entry.entry_id
            ):
                node.device_id = device.id
        status = protocol.node_filter(base, protocol.NODE_STATUS)
        self._unsub_subscribed = mqtt.async_on_subscribe_done(hass, status, 1, self._first_refresh)
        entry.async_on_unload(self.async_stop)
        entry.async_on_unload(hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, self._on_hass_stop))
        entry.async_on_unload(
            await mqtt.async_subscribe(
                hass, protocol.login_request_filter(base), self._on_login, qos=0, encoding=None
            )
        )
        entry.async_on_unload(
            await mqtt.async_subscribe(hass, protocol.log_filter(base), self._on_log, qos=1, encoding=None)
        )
        entry.async_on_unload(await mqtt.async_subscribe(hass, status, self._on_status, qos=1, encoding=None))
        entry.async_on_unload(mqtt.async_subscribe_connection_status(hass, self._on_connection))

    async def _on_hass_stop(self, event: Event) -> None:
        await self.async_stop()

    async def async_stop(self) -> None:
        """Stop answering, then write every queued log line and close the files."""
        if self._stopped:
            return
        self._process_logs()
        self._stopped = True
        if self._unsub_subscribed is not None:
            self._unsub_subscribed()
        for task in self._answers.values():
            task.cancel()
        for node in [*self.nodes.values(), *self.server_logs.values()]:
            if node.write_timer is not None:
                node.write_timer()
        if self._held_back_timer is not None:
            # a restart starts with the whole budget: nothing is held back then
            self._held_back_timer()
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_NEW_NODES)
        await self.writer.async_close()

    # refresh ----------------------------------------------------------------------

    @callback
    def _first_refresh(self) -> None:
        if self._unsub_subscribed is not None:
            self._unsub_subscribed()
            self._unsub_subscribed = None
            self._refresh()

    @callback
    def _on_connection(self, connected: bool) -> None:
        self.mqtt_connected = connected
        async_dispatcher_send(self.hass, self.signal_connection)
        if connected:
            self._refresh()

    @callback
    def _refresh(self) -> None:
        if self.nodes and not self._stopped:
            self.entry.async_create_background_task(self.hass, self._send_refresh(), "smartserver refresh")

    async def _send_refresh(self) -> None:
        for node_id in list(self.nodes):
            topic = protocol.node_topic(self.options.base, node_id, protocol.NODE_REFRESH)
            try:
                await mqtt.async_publish(self.hass, topic, REFRESH_PAYLOAD, qos=1, retain=False)
            except HomeAssistantError as err:
                LOGGER.debug("Refresh for %s not sent: %s", node_id, err)
                return

    # nodes --------------------------------------------------------------------------

    @callback
    def _refuse(self, node_id: str, what: str) -> None:
        """Warn once per hostile id (bounded), and write nothing for it."""
        if node_id not in self._warned and len(self._warned) < MAX_WARNED:
            self._warned.add(node_id)
            LOGGER.warning(
                "Ignored %s from %r: not a valid node id ([A-Za-z0-9_-]{1,64})", what, node_id[:80]
            )

    @callback
    def _contact(self, node_id: str, *, force: bool = False) -> Node | None:
        """Return the node, created (with its device) on first contact.

        None while new nodes are held back (see NEW_NODES_BURST); `force` is for the
        user's own actions.
        """
        node = self.nodes.get(node_id)
        now = time.monotonic()
        if node is None:
            if not force and not self._admit(node_id, now):
                return None
            device = dr.async_get(self.hass).async_get_or_create(
                config_entry_id=self.entry.entry_id, **node_device_info(node_id)
            )
            node = self.nodes[node_id] = Node(node_id, device.name or node_id, device.id)
            self._held_back.discard(node_id)
            async_dispatcher_send(self.hass, self.signal_new_node, node_id)
        node.seen = now
        return node

    @callback
    def _admit(self, node_id: str, now: float) -> bool:
        """Take a new node's token; else hold the node back and say so."""
        if self._new_nodes.take(now, NEW_NODES_PER_HOUR / 3600, NEW_NODES_BURST):
            return True
        if node_id not in self._held_back and len(self._held_back) < MAX_HELD_BACK:
            if not self._held_back:
                LOGGER.warning(
                    "Node %s is not added to Home Assistant yet: more than %s new nodes got in "
                    "touch, and new ones are added at %s an hour. Its log lines go to %s only; "
                    "its requests are answered once it is added",
                    node_id,
                    NEW_NODES_BURST,
                    NEW_NODES_PER_HOUR,
                    GENERAL_LOG,
                )
            self._held_back.add(node_id)
            placeholders = {
                "count": str(len(self._held_back)),
                "example": node_id,
                "burst": str(NEW_NODES_BURST),
                "per_hour": str(NEW_NODES_PER_HOUR),
            }
            self._create_issue(ISSUE_NEW_NODES, ir.IssueSeverity.WARNING, ISSUE_NEW_NODES, placeholders)
        self._held_back_last = time.time()
        if self._held_back_timer is None:
            self._held_back_timer = async_call_later(self.hass, NEW_NODES_QUIET_S, self._held_back_over)
        return False

    @callback
    def _create_issue(
        self, issue_id: str, severity: ir.IssueSeverity, key: str, placeholders: dict[str, str]
    ) -> None:
        """Raise a repair issue the user fixes outside HA (it clears itself)."""
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=severity,
            translation_key=key,
            translation_placeholders=placeholders,
        )

    @callback
    def _held_back_over(self, now: datetime) -> None:
        if (remaining := self._held_back_last + NEW_NODES_QUIET_S - now.timestamp()) > 0:
            self._held_back_timer = async_call_later(self.hass, remaining, self._held_back_over)
            return
        self._held_back_timer = None
        self._held_back.clear()
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_NEW_NODES)

    @callback
    def _names_seen(self, names: dict[str, str]) -> None:
        """Rename devices whose name in device_names.yaml changed."""
        registry = dr.async_get(self.hass)
        for node_id, name in names.items():
            node = self.nodes.get(node_id)
            if node is None or node.name == name:
                continue
            node.name = name
            if device := registry.async_get_device_by_identifier(
                node_identifier(node_id), self.entry.entry_id
            ):
                registry.async_update_device(device.id, name=name)

    @callback
    def _state_changed(self, node: Node) -> None:
        """Write the node's entity states now, or once the rate limit allows."""
        if node.write_timer is not None or self._stopped:
            return
        now = time.monotonic()
        due = node.written + self.options.state_interval
        if now >= due:
            node.written = now
            async_dispatcher_send(self.hass, self.signal(node.node_id))
        else:
            node.write_timer = async_call_later(self.hass, due - now, partial(self._write_later, node))

    @callback
    def _write_later(self, node: Node, _now: datetime) -> None:
        node.write_timer = None
        node.written = time.monotonic()
        async_dispatcher_send(self.hass, self.signal(node.node_id))

    @callback
    def async_remove_node(self, node_id: str) -> bool:
        """Forget a stale node; refuse while it is online or was heard recently."""
        node = self.nodes.get(node_id)
        if node is not None and (node.online or (node.seen and time.monotonic() - node.seen < STALE_AFTER_S)):
            return False
        if node is not None:
            if node.write_timer is not None:
                node.write_timer()
            del self.nodes[node_id]
        if task := self._answers.pop(node_id, None):
            task.cancel()
        return True

    # status ----------------------------------------------------------------------------

    @callback
    def _on_status(self, msg: mqtt.ReceiveMessage) -> None:
        node_id = protocol.parse_node_topic(self.options.base, msg.topic, protocol.NODE_STATUS)
        if node_id is None:
            return
        if not protocol.valid_id(node_id):
            self._refuse(node_id, "a status")
            return
        text = _text(msg.payload).strip()
        if text not in (protocol.ONLINE, protocol.OFFLINE, ""):
            LOGGER.warning("Ignored status %r of node %s: expected ONLINE or OFFLINE", text[:40], node_id)
            return
        if (node := self._contact(node_id)) is None:
            return
        node.online = None if not text else text == protocol.ONLINE
        if node.online is False and not node.offline_logged:
            node.offline_logged = True
            LOGGER.info("Node %s is offline", node_id)
        elif node.online and node.offline_logged:
            node.offline_logged = False
            LOGGER.info("Node %s is back online", node_id)
        self._state_changed(node)

    # logs ---------------------------------------------------------------------------------

    @callback
    def _on_log(self, msg: mqtt.ReceiveMessage) -> None:
        """Queue the message; the queue is handled once per event-loop turn."""
        queue = self._log_queue
        queue.append((msg.topic, msg.payload, time.time()))
        if len(queue) == 1:
            self.hass.loop.call_soon(self._process_logs)

    def _log_topic(self, topic: str) -> tuple[str, str] | None:
        """Node id and level of a log topic, or None (not ours, or a refused id)."""
        if topic in self._log_topics:
            return self._log_topics[topic]
        result: tuple[str, str] | None = None
        if (parsed := protocol.parse_log(self.options.base, topic)) is not None:
            if not protocol.valid_id(parsed.node):
                self._refuse(parsed.node, "a log line")
            else:
                level = parsed.level
                if level not in LEVEL_RANK:
                    level = topic.rsplit("/", 2)[-2]  # unknown: kept as given
                result = (parsed.node, level)
        if len(self._log_topics) >= MAX_LOG_TOPICS:
            self._log_topics.clear()
        self._log_topics[topic] = result
        return result

    @callback
    def _process_logs(self) -> None:
        """Every queued line to the writer; node states and events (rate-limited)."""
        batch, self._log_queue = self._log_queue, []
        if not batch:
            return
        lines: list[LogLine] = []
        changed: dict[str, Node] = {}
        event_rank = self.options.event_rank
        now = time.monotonic()
        for topic, payload, received in batch:
            if (parsed := self._log_topic(topic)) is None:
                continue
            node_id, level = parsed
            message = _text(payload)
            if (node := changed.get(node_id)) is None:
                found = self.server_logs.get(node_id) or self.nodes.get(node_id) or self._contact(node_id)
                if found is None:  # held back: its lines still reach the general log
                    lines.append(LogLine(received, level, node_id, message, own_log=False))
                    continue
                node = changed[node_id] = found
            lines.append(LogLine(received, level, node_id, message))
            text = message[:MAX_HA_TEXT]
            node.last_level, node.last_message, node.last_log_ts = level, text, received
            if level == "error":
                node.errors += 1
            elif level == "critical":
                node.criticals += 1
            if LEVEL_RANK.get(level, UNKNOWN_RANK) >= event_rank:
                if node.events.take(now, self.options.rate, self.options.rate):
                    self._fire(node, level, text)
                else:
                    node.suppressed += 1
        if lines:
            self.writer.add_many(lines)
        for node in changed.values():
            node.seen = now
            self._state_changed(node)

    @callback
    def _fire(self, node: Node, level: str, text: str) -> None:
        self.hass.bus.async_fire(
            EVENT_LOG,
            {
                "node": node.node_id,
                "name": node.name,
                "level": level,
                "message": text,
                "device_id": node.device_id,
            },
        )
        async_dispatcher_send(self.hass, self.event_signal(node.node_id), level, text)

    # configuration serving ------------------------------------------------------------

    @callback
    def _on_login(self, msg: mqtt.ReceiveMessage) -> None:
        node_id = protocol.parse_login_request(self.options.base, msg.topic)
        if node_id is None:
            return
        if not protocol.valid_id(node_id):
            self._refuse(node_id, "a configuration request")
            return
        try:
            request = protocol.parse_login_payload(
                bytes(msg.payload) if isinstance(msg.payload, bytearray) else msg.payload
            )
        except ValueError as err:
            LOGGER.warning("Ignored configuration request from %s: %s", node_id, err)
            return
        if (node := self._contact(node_id)) is None:
            return  # held back: it asks again until it is added
        node.wait_s = request.wait_s
        self._start_answer(node_id, request.wait_s, None)

    @callback
    def _start_answer(self, node_id: str, wait_s: float | None, answer: Answer | None) -> None:
        """Answer a node; a new request replaces an answer still being sent."""
        if old := self._answers.pop(node_id, None):
            old.cancel()
        self._answers[node_id] = self.entry.async_create_background_task(
            self.hass, self._answer(node_id, wait_s, answer), f"smartserver config for {node_id}"
        )

    async def _answer(self, node_id: str, wait_s: float | None, answer: Answer | None) -> None:
        try:
            if answer is None and (answer := await self._prepare(node_id, raise_errors=False)) is None:
                return
            await self._publish(node_id, wait_s, answer)
        except HomeAssistantError as err:
            LOGGER.warning("Configuration for %s not sent: %s", node_id, err)
        finally:
            if self._answers.get(node_id) is asyncio.current_task():
                del self._answers[node_id]

    async def _publish(self, node_id: str, wait_s: float | None, answer: Answer) -> None:
        base = self.options.base
        topic = protocol.login_answer(base, node_id)
        if wait_s is None:
            await mqtt.async_publish(self.hass, topic, answer.payload, qos=1, retain=False)
        else:
            await mqtt.async_publish(self.hass, topic, str(len(answer.components)), qos=1, retain=False)
            for name, payload in answer.components:
                await asyncio.sleep(wait_s)
                await mqtt.async_publish(
                    self.hass, protocol.login_component(base, node_id, name), payload, qos=1, retain=False
                )
        if node := self.nodes.get(node_id):
            node.served_at = time.time()
            node.served_hash = answer.digest
            self._state_changed(node)

    async def _prepare(self, node_id: str, *, raise_errors: bool) -> Answer | None:
        """Read the configuration; on a parse error log it and raise a repair issue."""
        issue_id = f"config_file_{node_id}"
        try:
            answer = await self._load(node_id)
        except ConfigFileError as err:
            placeholders = {"node": node_id, "file": err.path, "line": str(err.line), "reason": err.reason}
            LOGGER.error("Configuration of %s not served: %s", node_id, err)
            self._create_issue(issue_id, ir.IssueSeverity.ERROR, "config_file_error", placeholders)
            if raise_errors:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="config_file_error",
                    translation_placeholders=placeholders,
                ) from err
            return None
        except OSError as err:
            LOGGER.error("Could not read the configuration of %s: %s", node_id, err)
            if raise_errors:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="config_read_error",
                    translation_placeholders={"node": node_id, "error": str(err)},
                ) from err
            return None
        ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        for warning in answer.warnings:
            if (key := f"{node_id}\n{warning}") not in self._warned and len(self._warned) < MAX_WARNED:
                self._warned.add(key)
                LOGGER.warning("Configuration of %s: %s", node_id, warning)
        self._names_seen({node_id: answer.name})
        return answer

    def _load(self, node_id: str) -> asyncio.Future[Answer]:
        """Prepare the node's answer together with the other requests of this event-loop turn."""
        future: asyncio.Future[Answer] = self.hass.loop.create_future()
        if not self._to_prepare:
            self.hass.loop.call_soon(self._prepare_batch)
        self._to_prepare.append((node_id, future))
        return future

    @callback
    def _prepare_batch(self) -> None:
        batch, self._to_prepare = self._to_prepare, []
        job = self.hass.async_add_executor_job(prepare_answers, self.storage, [n for n, _f in batch])
        job.add_done_callback(partial(self._batch_done, [future for _n, future in batch]))

    @staticmethod
    def _batch_done(
        futures: list[asyncio.Future[Answer]], job: asyncio.Future[list[Answer | Exception]]
    ) -> None:
        if job.cancelled():
            results: list[Answer | BaseException | None] = [None] * len(futures)
        elif (error := job.exception()) is not None:
            results = [error] * len(futures)
        else:
            results = list(job.result())
        for future, result in zip(futures, results, strict=True):
            if future.done():  # the request was replaced or cancelled meanwhile
                continue
            if result is None:
                future.cancel()
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def async_push_config(self, node_id: str) -> None:
        """Send a node its configuration now, in the form it last asked for."""
        node = self._contact(node_id, force=True)
        assert node is not None
        answer = await self._prepare(node_id, raise_errors=True)
        self._start_answer(node_id, node.wait_s, answer)

    def diagnostics(self) -> dict[str, Any]:
        """State for the diagnostics download (redacted by the caller)."""
        return {
            "options": {
                "base": self.options.base,
                "storage": str(self.options.storage),
                "max_bytes": self.options.max_bytes,
                "backups": self.options.backups,
                "event_level": self.options.event_level,
                "rate": self.options.rate,
            },
            "log_writer": {
                "lines_written": self.writer.written,
                "lines_dropped": self.writer.dropped,
                "lines_pending_retry": self.writer.files.pending,
            },
            "nodes": {node_id: self.node_diagnostics(node_id) for node_id in sorted(self.nodes)},
            "new_nodes": {
                "budget_left": math.floor(self._new_nodes.tokens),
                "held_back": len(self._held_back),
            },
        }

    def node_diagnostics(self, node_id: str) -> dict[str, Any]:
        """Return one node's state."""
        node = self.nodes[node_id]
        return {
            "name": node.name,
            "online": node.online,
            "last_level": node.last_level,
            "last_message": node.last_message,
            "errors": node.errors,
            "criticals": node.criticals,
            "suppressed": node.suppressed,
            "config_served_at": node.served_at,
            "config_hash": node.served_hash,
            "wait_s": node.wait_s,
        }
