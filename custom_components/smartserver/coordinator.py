"""The entry's MQTT link: every subscription, the connection state, the refresh; and the runtime data.

Messages come in here, are parsed (topic, id, text) and handed to their owner: the
node managers (nodes.py) or the servers (servers.py). Nothing else subscribes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from . import protocol
from .const import CONF_BASE_TOPIC, LOGGER
from .helpers import WarnOnce, payload_bytes
from .log_tally import text_of
from .mgmt import Link, NodeHandler
from .nodes import NodeManager, NodeOptions
from .servers import ServerHub

# How long async_subscribe_node(wait_active=True) waits for the broker's acknowledgement.
SUBSCRIBE_TIMEOUT_S: Final = 30
# Parsed log topics remembered (a hostile client could invent endless ones).
MAX_LOG_TOPICS: Final = 4096


class SmartServerCoordinator:
    """Owns the MQTT link of one hub entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[SmartServerData],
        base: str,
        nodes: NodeManager,
        servers: ServerHub,
    ) -> None:
        """Link `nodes` and `servers` to MQTT under `base`; nothing is subscribed until async_start."""
        self.hass = hass
        self.entry = entry
        self.base = base
        self.nodes = nodes
        self.servers = servers
        self._refuse = WarnOnce()
        self._log_topics: dict[str, tuple[str, str] | None] = {}
        self._unsub_subscribed: CALLBACK_TYPE | None = None
        self._stopped = False

    async def async_start(self) -> None:
        """Subscribe status, the servers' topics and the connection; refresh the servers.

        Before the platforms: the servers' evidence is in when their entities are added
        (a node that gets in touch meanwhile is among the nodes the platforms add).
        """
        hass, base, entry = self.hass, self.base, self.entry
        entry.async_on_unload(self.async_stop)
        entry.async_on_unload(hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, self._on_hass_stop))
        self.servers.async_start()
        status = protocol.node_filter(base, protocol.NODE_STATUS)
        self._unsub_subscribed = mqtt.async_on_subscribe_done(hass, status, 1, self._first_refresh)
        await self.async_subscribe_nodes(protocol.NODE_STATUS, self._on_status, "a status")
        if self.servers.servers:
            servers = self.servers
            await self._subscribe_servers(
                protocol.SERVER_HEARTBEAT,
                lambda sid, msg: servers.async_heartbeat(sid, _stripped(msg), msg.retain),
            )
            await self._subscribe_servers(
                protocol.SERVER_STATE,
                lambda sid, msg: servers.async_agent_state(sid, _stripped(msg), msg.retain),
            )
            await self._subscribe_servers(
                protocol.SERVER_NETWORK, lambda sid, msg: servers.async_network(sid, _stripped(msg))
            )
            await self.async_subscribe_nodes(
                protocol.NODE_POWER,
                lambda node, msg: servers.async_power(node, _stripped(msg)),
            )
            await self.async_subscribe_nodes(
                protocol.NODE_REACH,
                lambda node, msg: servers.async_node_reach(node, _stripped(msg)),
            )
        entry.async_on_unload(mqtt.async_subscribe_connection_status(hass, self._on_connection))
        self._refresh(servers=True)

    async def async_start_nodes(self) -> None:
        """Subscribe the nodes' configuration requests and log lines (after the platforms)."""
        # the platforms made the servers' devices: their agents' log events carry their ids
        self.nodes.registry.async_link_server_devices()
        await self.nodes.registry.async_scan()  # nodes on disk are never held back
        await self._subscribe(protocol.login_request_filter(self.base), self._on_login, qos=0)
        await self._subscribe(protocol.log_filter(self.base), self._on_log)

    # subscriptions -----------------------------------------------------------------

    async def _subscribe(
        self, topic: str, handle: Callable[[mqtt.ReceiveMessage], None], qos: int = 1
    ) -> CALLBACK_TYPE:
        unsubscribe_mqtt: CALLBACK_TYPE | None = await mqtt.async_subscribe(
            self.hass, topic, handle, qos=qos, encoding=None
        )

        @callback
        def unsubscribe() -> None:
            # once: by its owner (say, an install that finished) or at unload
            nonlocal unsubscribe_mqtt
            if unsubscribe_mqtt is not None:
                unsubscribe_mqtt()
                unsubscribe_mqtt = None

        self.entry.async_on_unload(unsubscribe)
        return unsubscribe

    async def async_subscribe_nodes(
        self, leaf: str, handle: NodeHandler, what: str | None = None
    ) -> CALLBACK_TYPE:
        """Subscribe `<base>/node/+/<leaf>` (QoS 1, bytes) until unload: `handle(node_id, msg)`.

        Ids that are not valid node ids never reach `handle`; with `what` ("a status")
        each is warned about once. Returns the unsubscribe callback (it is also called
        at unload; calling it twice is harmless).
        """

        @callback
        def message(msg: mqtt.ReceiveMessage) -> None:
            node_id = protocol.parse_node_topic(self.base, msg.topic, leaf)
            if node_id is None:
                return
            if not protocol.valid_id(node_id):
                if what is not None:
                    self.refuse(node_id, what)
                return
            handle(node_id, msg)

        return await self._subscribe(protocol.node_filter(self.base, leaf), message)

    async def async_subscribe_node(
        self,
        node_id: str,
        leaf: str,
        handle: Callable[[mqtt.ReceiveMessage], None],
        *,
        wait_active: bool = False,
    ) -> CALLBACK_TYPE:
        """Subscribe one node's `<base>/node/<node>/<leaf>` (QoS 1, bytes), e.g. its mgmt replies.

        With `wait_active`, return once the broker acknowledged the subscription (HA
        debounces SUBSCRIBE: a reply to a command sent earlier could be lost); raises
        TimeoutError after SUBSCRIBE_TIMEOUT_S. Returns the unsubscribe callback; it is
        also called at unload.
        """
        topic = protocol.node_topic(self.base, node_id, leaf)
        if not wait_active:
            return await self._subscribe(topic, handle)
        active: asyncio.Future[None] = self.hass.loop.create_future()

        @callback
        def acknowledged() -> None:
            if not active.done():
                active.set_result(None)

        stop_watching = mqtt.async_on_subscribe_done(self.hass, topic, 1, acknowledged)
        try:
            unsubscribe = await self._subscribe(topic, handle)
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    await active
            except TimeoutError:
                unsubscribe()
                raise
        finally:
            stop_watching()
        return unsubscribe

    async def async_publish(self, topic: str, payload: bytes | str) -> None:
        """Publish at QoS 1, never retained (commands, management data)."""
        await mqtt.async_publish(self.hass, topic, payload, qos=1, retain=False)

    def link(self) -> Link:
        """Return the firmware manager's way to MQTT: this coordinator's subscriptions."""

        async def subscribe_nodes(leaf: str, handle: NodeHandler) -> CALLBACK_TYPE:
            return await self.async_subscribe_nodes(leaf, handle, what=f"a {leaf} message")

        async def subscribe_node(
            node_id: str, leaf: str, handle: Callable[[mqtt.ReceiveMessage], None]
        ) -> CALLBACK_TYPE:
            return await self.async_subscribe_node(node_id, leaf, handle, wait_active=True)

        return Link(subscribe_nodes, subscribe_node, self.async_publish)

    async def _subscribe_servers(self, leaf: str, handle: NodeHandler) -> None:
        @callback
        def message(msg: mqtt.ReceiveMessage) -> None:
            if (server_id := protocol.parse_server_topic(self.base, msg.topic, leaf)) is not None:
                handle(server_id, msg)

        await self._subscribe(protocol.server_filter(self.base, leaf), message)

    @callback
    def refuse(self, node_id: str, what: str, *, strict: bool = True) -> None:
        """Warn once per hostile id (bounded), and pass nothing on for it."""
        rule = "[A-Za-z0-9_-]{1,64}" if strict else "one topic level, not . or .., at most 64 bytes"
        self._refuse(node_id, "Ignored %s from %r: not a valid node id (%s)", what, node_id[:80], rule)

    # messages ------------------------------------------------------------------------

    @callback
    def _on_status(self, node_id: str, msg: mqtt.ReceiveMessage) -> None:
        text = _stripped(msg)
        if self.nodes.async_status(node_id, text) and text:
            # a cleared status tells a server nothing about its relay node
            self.servers.async_node_status(node_id, text)

    @callback
    def _on_login(self, msg: mqtt.ReceiveMessage) -> None:
        node_id = protocol.parse_login_request(self.base, msg.topic)
        if node_id is None:
            return
        if not protocol.valid_name(node_id):
            self.refuse(node_id, "a configuration request", strict=False)
            return
        self.nodes.config.async_request(node_id, payload_bytes(msg))

    @callback
    def _on_log(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            parsed = self._log_topics[msg.topic]
        except KeyError:
            parsed = self._log_topic(msg.topic)
        if parsed is not None:
            # the payload as it came: the writer process decodes it
            self.nodes.logs.async_line(parsed[0], parsed[1], msg.payload, time.time())

    def _log_topic(self, topic: str) -> tuple[str, str] | None:
        """Node id and level of a log topic not seen yet, or None (not ours, or a refused id)."""
        result: tuple[str, str] | None = None
        if (parsed := protocol.parse_log(self.base, topic)) is not None:
            if not protocol.valid_name(parsed.node):
                self.refuse(parsed.node, "a log line", strict=False)
            else:
                result = (parsed.node, parsed.level)
        if len(self._log_topics) >= MAX_LOG_TOPICS:
            self._log_topics.clear()
        self._log_topics[topic] = result
        return result

    # connection and refresh ------------------------------------------------------------

    @callback
    def _on_connection(self, connected: bool) -> None:
        self.nodes.async_connection(connected)
        self.servers.async_connection(connected)
        if connected:
            self._refresh(nodes=True, servers=True)

    @callback
    def _first_refresh(self) -> None:
        if self._unsub_subscribed is not None:
            self._unsub_subscribed()
            self._unsub_subscribed = None
            self._refresh(nodes=True)

    @callback
    def _refresh(self, *, nodes: bool = False, servers: bool = False) -> None:
        """Ask the known nodes and/or the servers' agents and relay nodes to republish."""
        topics: dict[str, None] = {}  # each topic once, in order
        if servers:
            for server in self.servers.servers.values():
                config = server.config
                topics[protocol.server_topic(self.base, config.server_id, protocol.SERVER_REFRESH)] = None
                if config.relay_node:
                    topics[protocol.node_topic(self.base, config.relay_node, protocol.NODE_REFRESH)] = None
        if nodes:
            for node_id in self.nodes.registry.nodes:
                topics[protocol.node_topic(self.base, node_id, protocol.NODE_REFRESH)] = None
        if topics and not self._stopped:
            self.entry.async_create_task(self.hass, self._send_refresh(topics), "smartserver refresh")

    async def _send_refresh(self, topics: Iterable[str]) -> None:
        for topic in topics:
            try:
                await self.async_publish(topic, protocol.REFRESH_PAYLOAD)
            except HomeAssistantError as err:
                LOGGER.warning("Could not ask for a refresh on %s: %s", topic, err)
                return

    # stop ------------------------------------------------------------------------------

    async def _on_hass_stop(self, event: Event) -> None:
        await self.async_stop()

    async def async_stop(self) -> None:
        """Stop the refresh, the servers' timers and the nodes (their queued lines are written)."""
        if self._stopped:
            return
        self._stopped = True
        if self._unsub_subscribed is not None:
            self._unsub_subscribed()
            self._unsub_subscribed = None
        self.servers.async_stop()
        await self.nodes.async_stop()


def _stripped(msg: mqtt.ReceiveMessage) -> str:
    return text_of(msg.payload).strip()


@dataclass(frozen=True, slots=True)
class SmartServerData:
    """What one hub entry holds while it is loaded."""

    base_topic: str
    coordinator: SmartServerCoordinator
    nodes: NodeManager
    servers: ServerHub


type SmartServerConfigEntry = ConfigEntry[SmartServerData]


def build_runtime_data(hass: HomeAssistant, entry: SmartServerConfigEntry) -> SmartServerData:
    """Build the entry's managers and its coordinator from the entry's options and subentries."""
    base = protocol.validate_base(
        entry.options.get(CONF_BASE_TOPIC, entry.data.get(CONF_BASE_TOPIC)) or protocol.DEFAULT_BASE
    )
    connected = mqtt.is_connected(hass)
    servers = ServerHub(hass, entry, base, connected=connected)
    nodes = NodeManager(
        hass,
        entry,
        NodeOptions.from_entry(hass, entry, base),
        servers.configs,
        servers.node_sections(),
        connected=connected,
    )
    return SmartServerData(base, SmartServerCoordinator(hass, entry, base, nodes, servers), nodes, servers)
