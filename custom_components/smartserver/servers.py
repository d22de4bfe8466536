"""Homelab servers: their settings, the MQTT evidence fed to each one's power machine, signed commands.

The rules of the fused power state live in power.py; `Server` applies what the machine
returns (timers, repair issues, commands, entity updates).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from homeassistant.components import mqtt
from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigSubentry,
)
from homeassistant.const import CONF_NAME
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import async_call_later, async_track_time_interval
from wakeonlan import send_magic_packet

from . import protocol
from .const import (
    CONF_COMMAND_KEY,
    CONF_MAC,
    CONF_NODE_KEY,
    CONF_POWER_ON,
    CONF_REACH_BY,
    CONF_REACH_HOST,
    CONF_REACH_INTERVAL,
    CONF_REACH_PORT,
    CONF_RELAY_NODE,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    CONF_WOL_ADDRESS,
    CONF_WOL_PORT,
    DEFAULT_REACH_INTERVAL,
    DEFAULT_START_GRACE,
    DEFAULT_STOP_GRACE,
    DOMAIN,
    LOGGER,
    REACH_TIMEOUT_S,
    SUBENTRY_SERVER,
)
from .helpers import create_issue
from .power import (
    Action,
    ArmTimer,
    CancelTimer,
    ClearIssue,
    Command,
    Effect,
    Issue,
    Notify,
    PowerConfig,
    PowerMachine,
    PowerOn,
    PowerState,
    RaiseIssue,
    Refusal,
    Refuse,
    Send,
    Timer,
    clear_issues,
)

# The platforms and tests import the power state and the issues from here as well.
__all__ = ["Issue", "PowerState", "ReachBy", "Server", "ServerConfig", "ServerHub"]

# Network results are small; anything larger is not from our agent.
MAX_NETWORK_PAYLOAD = 16384
# Check name -> the keys the agent may use for it, first found wins.
NETWORK_CHECKS: Mapping[str, tuple[str, ...]] = {
    "link": ("link",),
    "default_route": ("default_route",),
    "internet": ("reachable", "internet"),
}


class ReachBy(StrEnum):
    """Who checks the server's TCP port; the values are stored in its subentry."""

    HA = "ha"
    NODE = "node"  # the server's node, on its network segment (firmware reach.py)


@dataclass(frozen=True, slots=True)
class ServerConfig(PowerConfig):
    """One server subentry: what its power machine needs, and its ids, name and keys."""

    subentry_id: str
    name: str
    command_key: str = field(repr=False)
    node_key: str = field(repr=False)
    mac: str = ""
    wol_address: str = protocol.WOL_ADDRESS
    wol_port: int = protocol.WOL_PORT
    # the TCP port checked for reachability (by HA or the node), how often; no host: no check
    reach_host: str = ""
    reach_port: int = 0
    reach_by: ReachBy = ReachBy.HA
    reach_interval: int = DEFAULT_REACH_INTERVAL

    @classmethod
    def from_subentry(cls, subentry: ConfigSubentry) -> ServerConfig:
        """Read a server subentry's data."""
        data = subentry.data
        return cls(
            subentry_id=subentry.subentry_id,
            server_id=data[CONF_SERVER_ID],
            name=data.get(CONF_NAME, subentry.title),
            relay_node=data.get(CONF_RELAY_NODE) or None,
            start_grace=float(data.get(CONF_START_GRACE, DEFAULT_START_GRACE)),
            stop_grace=float(data.get(CONF_STOP_GRACE, DEFAULT_STOP_GRACE)),
            command_key=data[CONF_COMMAND_KEY],
            node_key=data[CONF_NODE_KEY],
            # subentries from before the power-on methods press the relay
            power_on=PowerOn(data.get(CONF_POWER_ON, PowerOn.RELAY)),
            mac=data.get(CONF_MAC, ""),
            wol_address=data.get(CONF_WOL_ADDRESS, protocol.WOL_ADDRESS),
            wol_port=int(data.get(CONF_WOL_PORT, protocol.WOL_PORT)),
            reach_host=data.get(CONF_REACH_HOST, ""),
            reach_port=int(data.get(CONF_REACH_PORT, 0)),
            reach_by=ReachBy(data.get(CONF_REACH_BY, ReachBy.HA)),
            reach_interval=int(data.get(CONF_REACH_INTERVAL, DEFAULT_REACH_INTERVAL)),
        )

    def checks(self, by: ReachBy) -> bool:
        """Whether `by` checks the server's port."""
        return bool(self.reach_host) and self.reach_by is by

    def node_sections(self) -> dict[str, Any]:
        """Return the configuration sections HA serves to the server's node for this server."""
        sections: dict[str, Any] = {}
        if self.power_on is PowerOn.WOL_NODE:
            sections["wol"] = {}  # a node without a relay takes WOL too
        if self.checks(ReachBy.NODE):
            sections["reach"] = {
                "host": self.reach_host,
                "port": self.reach_port,
                "interval_s": self.reach_interval,
                "timeout_ms": REACH_TIMEOUT_S * 1000,
            }
        return sections


def server_subentries(entry: ConfigEntry[Any]) -> list[ConfigSubentry]:
    """Return the hub's server subentries."""
    return list(entry.get_subentries_of_type(SUBENTRY_SERVER))


def parse_network(payload: str) -> dict[str, bool | None]:
    """Read the agent's network JSON; a check is a bool or `{"ok": bool, ...}`."""
    if len(payload) > MAX_NETWORK_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} characters is too large")
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    result: dict[str, bool | None] = {}
    for check, keys in NETWORK_CHECKS.items():
        value = next((data[key] for key in keys if key in data), None)
        if isinstance(value, dict):
            value = value.get("ok")
        result[check] = value if isinstance(value, bool) else None
    return result


class Server:
    """One homelab server in HA: feeds its power machine and applies what the machine returns."""

    def __init__(self, hass: HomeAssistant, entry_id: str, base: str, config: ServerConfig) -> None:
        self.hass = hass
        self.entry_id = entry_id
        self.base = base
        self.config = config
        self.machine = PowerMachine(config)
        # While HA's MQTT client is disconnected the evidence may be stale and commands
        # cannot leave: the entities are unavailable.
        self.mqtt_connected = True
        self.network: dict[str, bool | None] = {}
        self._timers: dict[Timer, CALLBACK_TYPE] = {}
        self._stop_checks: CALLBACK_TYPE | None = None
        self._listeners: list[CALLBACK_TYPE] = []

    # What the entities show ---------------------------------------------------------------

    @property
    def state(self) -> PowerState | None:
        """The fused power state; None until the first report."""
        return self.machine.state

    @property
    def heartbeat(self) -> str | None:
        """The agent's last heartbeat, ALIVE or DEAD."""
        return self.machine.evidence.heartbeat

    @property
    def agent_state(self) -> str | None:
        """The agent's last state in its current session."""
        return self.machine.evidence.agent_state

    @property
    def power(self) -> str | None:
        """The relay node's power sense, ON or OFF."""
        return self.machine.evidence.power

    @property
    def reachable(self) -> bool | None:
        """Whether the server's TCP port answered at the last check; None before one."""
        return self.machine.evidence.reachable

    @property
    def node_status(self) -> str | None:
        """The relay node's availability, ONLINE or OFFLINE."""
        return self.machine.evidence.node_status

    @property
    def command(self) -> Command | None:
        """The command the server is given its grace period for."""
        return self.machine.command

    @property
    def agent_up(self) -> bool:
        """Whether the agent reports life in the current power cycle."""
        return self.machine.evidence.agent_up

    @property
    def contradicted(self) -> bool:
        """Whether the power sense reads OFF while the agent reports the server running."""
        return self.machine.evidence.contradicted

    # Listeners ----------------------------------------------------------------------------

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `update` whenever the server's evidence or state changes."""
        self._listeners.append(update)

        @callback
        def remove() -> None:
            self._listeners.remove(update)

        return remove

    @callback
    def _notify(self) -> None:
        for update in list(self._listeners):
            update()

    # Evidence -----------------------------------------------------------------------------

    def _valid(self, what: str, payload: str, allowed: tuple[str, ...]) -> bool:
        """Return whether `payload` is one of `allowed`; log what is ignored."""
        if payload in allowed:
            return True
        LOGGER.warning("Server %s: ignoring %s %r", self.config.server_id, what, payload[:64])
        return False

    @callback
    def async_heartbeat(self, payload: str, retained: bool) -> None:
        """Take the agent's heartbeat: ALIVE, or DEAD (its Will, or before powering off)."""
        if self._valid("heartbeat", payload, (protocol.ALIVE, protocol.DEAD)):
            self._apply(self.machine.on_heartbeat(payload, retained, time.monotonic()))

    @callback
    def async_agent_state(self, payload: str, retained: bool = False) -> None:
        """Take the agent's own state: STARTING, ONLINE, SHUTTING_DOWN or OFFLINE."""
        if self._valid("state", payload, protocol.ServerState.ALL):
            self._apply(self.machine.on_agent_state(payload, retained, time.monotonic()))

    @callback
    def async_power(self, payload: str) -> None:
        """Take the relay node's power sense: ON or OFF."""
        if self._valid("power sense", payload, (protocol.POWER_ON, protocol.POWER_OFF)):
            self._apply(self.machine.on_power(payload, time.monotonic()))

    @callback
    def async_node_status(self, payload: str) -> None:
        """Take the relay node's availability, ONLINE or OFFLINE (the node manager checked it)."""
        self._apply(self.machine.on_node_status(payload))
        if payload == protocol.OFFLINE and self.config.checks(ReachBy.NODE):
            # the node's last answer no longer holds: nobody checks now
            self._apply(self.machine.on_reachable(None, time.monotonic()))

    @callback
    def async_node_reach(self, payload: str) -> None:
        """Take the node's check of the server's port: ON (answered) or OFF (no answer)."""
        if not self.config.checks(ReachBy.NODE):
            return  # HA checks, or nobody: a node's report is not asked for
        if self._valid("reachability report", payload, (protocol.REACH_ON, protocol.REACH_OFF)):
            self._apply(self.machine.on_reachable(payload == protocol.REACH_ON, time.monotonic()))

    @callback
    def async_mqtt_connected(self, connected: bool) -> None:
        """Follow HA's MQTT connection."""
        self.mqtt_connected = connected
        self._notify()

    @callback
    def async_network(self, payload: str) -> None:
        """Take the agent's network check results."""
        try:
            self.network = parse_network(payload)
        except ValueError as err:
            LOGGER.warning("Server %s: ignoring network report: %s", self.config.server_id, err)
            return
        self._notify()

    # The machine's effects ----------------------------------------------------------------

    @callback
    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case RaiseIssue(issue, placeholders, fixable):
                    self._raise(issue, placeholders, fixable)
                case ClearIssue(issue):
                    ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(issue))
                case ArmTimer(timer, delay):
                    self._arm(timer, delay)
                case CancelTimer(timer):
                    if cancel := self._timers.pop(timer, None):
                        cancel()
                case Notify():
                    self._notify()

    @callback
    def _arm(self, timer: Timer, delay: float) -> None:
        if cancel := self._timers.pop(timer, None):
            cancel()

        @callback
        def expired(_now: datetime) -> None:
            self._timers.pop(timer, None)
            self._apply(self.machine.expire(timer, time.monotonic()))

        self._timers[timer] = async_call_later(self.hass, delay, HassJob(expired, cancel_on_shutdown=True))

    @callback
    def async_start_checks(self) -> None:
        """Check the server's TCP port at its interval, if HA is the one to check it."""
        if self.config.checks(ReachBy.HA):
            self._stop_checks = async_track_time_interval(
                self.hass,
                self._check,
                timedelta(seconds=self.config.reach_interval),
                cancel_on_shutdown=True,
            )

    async def _check(self, _now: datetime | None = None) -> None:
        """Connect to the server's port; an answer is evidence that it runs."""
        config = self.config
        try:
            async with asyncio.timeout(REACH_TIMEOUT_S):
                _reader, writer = await asyncio.open_connection(config.reach_host, config.reach_port)
            writer.close()
            answered = True
        except OSError, TimeoutError:
            answered = False
        self._apply(self.machine.on_reachable(answered, time.monotonic()))

    @callback
    def async_stop(self) -> None:
        """Cancel the timers and the checks (the entry unloads)."""
        if self._stop_checks:
            self._stop_checks()
            self._stop_checks = None
        self._apply(self.machine.stop())

    def _issue_id(self, issue: Issue) -> str:
        return f"{self.config.server_id}_{issue}"

    @callback
    def _raise(self, issue: Issue, placeholders: Mapping[str, str], fixable: bool) -> None:
        create_issue(
            self.hass,
            self._issue_id(issue),
            issue,
            {
                "name": self.config.name,
                "server_id": self.config.server_id,
                "relay_node": self.config.relay_node or "",
                **placeholders,
            },
            data={"entry_id": self.entry_id, "subentry_id": self.config.subentry_id} if fixable else None,
        )

    @callback
    def async_clear_issues(self) -> None:
        """Delete the server's repair issues (the server was removed)."""
        self._apply(clear_issues())

    # Commands -----------------------------------------------------------------------------

    def _error(self, key: str, **placeholders: str) -> HomeAssistantError:
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={"name": self.config.name, **placeholders},
        )

    def _refused(self, key: Refusal, placeholders: Mapping[str, str]) -> HomeAssistantError:
        # typed with the enum: tests/test_repository.py finds the translation keys through it
        return self._error(key, **placeholders)

    async def _publish(self, topic: str, payload: str) -> None:
        try:
            await mqtt.async_publish(self.hass, topic, payload, qos=1, retain=False)
        except HomeAssistantError as err:
            raise self._error("publish_failed", error=str(err)) from err

    async def _act(self, action: Action) -> None:
        """Send what the machine decides for `action`, then let it wait for the result."""
        decision = self.machine.decide(action)
        if isinstance(decision, Refuse):
            raise self._refused(decision.key, decision.placeholders)
        if decision is not None:
            await self._send(decision)
            self._apply(self.machine.begin(action, time.monotonic()))

    async def _send(self, send: Send) -> None:
        config = self.config
        if send.from_ha:
            await self._wake()
            return
        arg = (
            protocol.wol_arg(config.mac, config.wol_address, config.wol_port)
            if send.cmd == protocol.WOL
            else ""
        )
        if send.to_agent:
            key, target = config.command_key, config.server_id
            topic = protocol.server_topic(self.base, target, protocol.SERVER_SYSTEM)
        else:
            # decide() refuses a node's command to a server without a node
            assert config.relay_node is not None
            key, target = config.node_key, config.relay_node
            topic = protocol.node_topic(self.base, target, protocol.NODE_POWER_SET)
        await self._publish(topic, protocol.sign_command(key, target, send.cmd, int(time.time()), arg))

    async def _wake(self) -> None:
        """Send the magic packet from Home Assistant (the wake_on_lan integration's library)."""
        config = self.config
        wake = partial(send_magic_packet, config.mac, ip_address=config.wol_address, port=config.wol_port)
        try:
            await self.hass.async_add_executor_job(wake)
        except OSError as err:
            raise self._error("wol_failed", error=str(err)) from err

    async def async_turn_on(self) -> None:
        """Press the power button, unless the server is on or starting."""
        await self._act(Action.TURN_ON)

    async def async_turn_off(self) -> None:
        """Ask the agent to shut the server down cleanly."""
        await self._act(Action.TURN_OFF)

    async def async_reboot(self) -> None:
        """Ask the agent to reboot the server."""
        await self._act(Action.REBOOT)

    async def async_force_off(self) -> None:
        """Hold the power button: the server loses power without shutting down."""
        await self._act(Action.FORCE_OFF)

    def diagnostics(self) -> dict[str, Any]:
        """Return the server's evidence, state and pending command."""
        age = self.machine.evidence.beat_age(time.monotonic())
        return {
            "state": self.state.value if self.state else None,
            "heartbeat": self.heartbeat,
            "agent_state": self.agent_state,
            "power_sense": self.power,
            "power_sense_contradicts_agent": self.contradicted,
            "live_heartbeat_age_s": None if age is None else round(age, 1),
            "relay_node_status": self.node_status,
            "reachable": self.reachable,
            "network": self.network,
            "command": self.command.value if self.command else None,
        }


def _snapshot(entry: ConfigEntry[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {sub.subentry_id: (sub.title, dict(sub.data)) for sub in server_subentries(entry)}


class ServerHub:
    """Every server of the hub entry; the coordinator hands it each message, parsed, by id."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any], base: str, *, connected: bool) -> None:
        """Create a Server per subentry."""
        self.hass = hass
        self.entry = entry
        self.servers: dict[str, Server] = {}
        for subentry in server_subentries(entry):
            config = ServerConfig.from_subentry(subentry)
            self.servers[subentry.subentry_id] = server = Server(hass, entry.entry_id, base, config)
            server.mqtt_connected = connected
        self.configs = {s.config.server_id: s.config for s in self.servers.values()}
        self._by_id = {s.config.server_id: s for s in self.servers.values()}
        self._by_node = {node: s for s in self.servers.values() if (node := s.config.relay_node)}
        self._loaded = _snapshot(entry)

    @callback
    def async_start(self) -> None:
        """Follow subentry changes."""
        self.entry.async_on_unload(
            async_dispatcher_connect(self.hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._entry_changed)
        )
        for server in self.servers.values():
            server.async_start_checks()

    @callback
    def async_heartbeat(self, server_id: str, text: str, retained: bool) -> None:
        """Take an agent's `heartbeat`."""
        if server := self._by_id.get(server_id):
            server.async_heartbeat(text, retained)

    @callback
    def async_agent_state(self, server_id: str, text: str, retained: bool) -> None:
        """Take an agent's `state`."""
        if server := self._by_id.get(server_id):
            server.async_agent_state(text, retained)

    @callback
    def async_network(self, server_id: str, text: str) -> None:
        """Take an agent's `network` checks."""
        if server := self._by_id.get(server_id):
            server.async_network(text)

    @callback
    def async_power(self, node_id: str, text: str) -> None:
        """Take a relay node's power sense."""
        if server := self._by_node.get(node_id):
            server.async_power(text)

    @callback
    def async_node_status(self, node_id: str, text: str) -> None:
        """Take a relay node's availability."""
        if server := self._by_node.get(node_id):
            server.async_node_status(text)

    @callback
    def async_node_reach(self, node_id: str, text: str) -> None:
        """Take a node's check of its server's port."""
        if server := self._by_node.get(node_id):
            server.async_node_reach(text)

    def node_sections(self) -> dict[str, dict[str, Any]]:
        """Return the sections HA serves to each server's node (node id -> sections), if any."""
        return {
            node: sections
            for server in self.servers.values()
            if (node := server.config.relay_node) and (sections := server.config.node_sections())
        }

    @callback
    def async_connection(self, connected: bool) -> None:
        """Follow HA's MQTT connection."""
        for server in self.servers.values():
            server.async_mqtt_connected(connected)

    @callback
    def _entry_changed(self, change: ConfigEntryChange, entry: ConfigEntry[Any]) -> None:
        """Reload when a server subentry was added, changed or removed."""
        if entry.entry_id != self.entry.entry_id or change is not ConfigEntryChange.UPDATED:
            return
        if (snapshot := _snapshot(entry)) != self._loaded:
            self._loaded = snapshot
            for subentry_id, server in self.servers.items():
                if subentry_id not in self._loaded:
                    server.async_clear_issues()
            self.hass.config_entries.async_schedule_reload(entry.entry_id)

    @callback
    def async_stop(self) -> None:
        """Cancel every server's timers."""
        for server in self.servers.values():
            server.async_stop()

    def diagnostics(self) -> dict[str, Any]:
        """Return the servers' section of the diagnostics: settings and evidence, keys redacted."""
        return {
            "servers": [
                {
                    "title": subentry.title,
                    "data": async_redact_data(dict(subentry.data), {CONF_COMMAND_KEY, CONF_NODE_KEY}),
                    "runtime": server.diagnostics()
                    if (server := self.servers.get(subentry.subentry_id))
                    else None,
                }
                for subentry in server_subentries(self.entry)
            ]
        }
