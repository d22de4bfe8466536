"""Homelab servers: the fused power state, the evidence it follows and the signed commands.

docs/servers.md describes the state machine; this module is its only implementation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
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
from homeassistant.helpers.event import async_call_later

from . import protocol
from .const import (
    CONF_COMMAND_KEY,
    CONF_NODE_KEY,
    CONF_RELAY_NODE,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    DEFAULT_START_GRACE,
    DEFAULT_STOP_GRACE,
    DOMAIN,
    LOGGER,
    SUBENTRY_SERVER,
)

# Network results are small; anything larger is not from our agent.
MAX_NETWORK_PAYLOAD = 16384
# Check name -> the keys the agent may use for it, first found wins.
NETWORK_CHECKS: Mapping[str, tuple[str, ...]] = {
    "link": ("link",),
    "default_route": ("default_route",),
    "internet": ("reachable", "internet"),
}
REFRESH_PAYLOAD = "refresh"
# A live ALIVE stays fresh for this many heartbeat intervals: the largest gap seen
# between two of them in the agent's session, at least the agent's default.
HEARTBEAT_S = 30.0
FRESH_BEATS = 3
_ANNOUNCED_DOWN = (protocol.ServerState.SHUTTING_DOWN, protocol.ServerState.OFFLINE)


class PowerState(StrEnum):
    """The fused power state of a server."""

    OFF = "off"
    STARTING = "starting"
    ON = "on"
    STOPPING = "stopping"


class Issue(StrEnum):
    """Repair issues a server can raise; the values are translation keys."""

    START_NO_RESPONSE = "start_no_response"
    START_AGENT_SILENT = "start_agent_silent"
    START_TIMEOUT = "start_timeout"
    START_INTERRUPTED = "start_interrupted"
    STOP_NO_RESPONSE = "stop_no_response"
    STOP_STILL_POWERED = "stop_still_powered"
    STOP_TIMEOUT = "stop_timeout"
    STOP_INTERRUPTED = "stop_interrupted"
    POWER_SENSE_MISMATCH = "power_sense_mismatch"
    AGENT_LOST = "agent_lost"


# Issues with a fix flow (repairs.py): cut the power of a server that hangs powered.
_FIXABLE = (Issue.STOP_STILL_POWERED,)

# Issues a reached state makes moot.
_SOLVED_BY: Mapping[PowerState, tuple[Issue, ...]] = {
    PowerState.ON: (
        Issue.START_NO_RESPONSE,
        Issue.START_AGENT_SILENT,
        Issue.START_TIMEOUT,
        Issue.START_INTERRUPTED,
        Issue.AGENT_LOST,
        # the server booted again: whatever hung at the last shutdown is over
        Issue.STOP_STILL_POWERED,
    ),
    PowerState.OFF: (
        Issue.STOP_NO_RESPONSE,
        Issue.STOP_STILL_POWERED,
        Issue.STOP_TIMEOUT,
        Issue.STOP_INTERRUPTED,
    ),
}


class Command(StrEnum):
    """What the user last asked for, until the state reaches it or its grace ends."""

    START = "start"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class _Grace:
    """What a grace period expects and which issue each way of failing it raises."""

    moving: PowerState
    unmoved: tuple[PowerState | None, ...]
    powered_silent: Issue
    stuck: Issue
    no_response: Issue


_GRACE: Mapping[Command, _Grace] = {
    Command.START: _Grace(
        PowerState.STARTING,
        (PowerState.OFF, None),
        Issue.START_AGENT_SILENT,
        Issue.START_TIMEOUT,
        Issue.START_NO_RESPONSE,
    ),
    Command.STOP: _Grace(
        PowerState.STOPPING,
        (PowerState.ON,),
        Issue.STOP_STILL_POWERED,
        Issue.STOP_TIMEOUT,
        Issue.STOP_NO_RESPONSE,
    ),
}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One server subentry."""

    subentry_id: str
    server_id: str
    name: str
    relay_node: str
    start_grace: float
    stop_grace: float
    command_key: str = field(repr=False)
    node_key: str = field(repr=False)

    @classmethod
    def from_subentry(cls, subentry: ConfigSubentry) -> ServerConfig:
        """Read a server subentry's data."""
        data = subentry.data
        return cls(
            subentry_id=subentry.subentry_id,
            server_id=data[CONF_SERVER_ID],
            name=data.get(CONF_NAME, subentry.title),
            relay_node=data[CONF_RELAY_NODE],
            start_grace=float(data.get(CONF_START_GRACE, DEFAULT_START_GRACE)),
            stop_grace=float(data.get(CONF_STOP_GRACE, DEFAULT_STOP_GRACE)),
            command_key=data[CONF_COMMAND_KEY],
            node_key=data[CONF_NODE_KEY],
        )


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
    """One homelab server: its evidence, the fused state and its commands."""

    def __init__(self, hass: HomeAssistant, entry_id: str, base: str, config: ServerConfig) -> None:
        self.hass = hass
        self.entry_id = entry_id
        self.base = base
        self.config = config
        self.state: PowerState | None = None
        self.heartbeat: str | None = None
        self.agent_state: str | None = None
        self.power: str | None = None
        self.node_status: str | None = None
        # While HA's MQTT client is disconnected the evidence may be stale and commands
        # cannot leave: the entities are unavailable.
        self.mqtt_connected = True
        self.network: dict[str, bool | None] = {}
        # After the power sense reads OFF, the agent's retained messages belong to the
        # previous power cycle until it shows life again.
        self._agent_stale = False
        # A grace period ran out with the machine powered and the agent silent: the
        # power sense wins from then on, until new evidence arrives.
        self._overdue = False
        # The agent connected again and has not said its state yet: it is starting.
        self._new_session = False
        # When the last live (not retained) ALIVE arrived, and the largest gap between two.
        self._alive_at: float | None = None
        self._beat_gap = HEARTBEAT_S
        self._stale_timer: CALLBACK_TYPE | None = None
        # HA saw the agent announce its shutdown live, not a retained one from an earlier boot.
        self._down_live = False
        self._forced = False
        # The agent's loss was logged: its return is logged once too.
        self._lost_logged = False
        self.command: Command | None = None
        self._timers: dict[Command, CALLBACK_TYPE] = {}
        self._listeners: list[CALLBACK_TYPE] = []

    # Listeners ------------------------------------------------------------------

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

    @property
    def agent_up(self) -> bool:
        """Whether the agent reports life in the current power cycle."""
        return self.heartbeat == protocol.ALIVE and not self._agent_stale

    @property
    def contradicted(self) -> bool:
        """Whether the power sense reads OFF while the agent reports the server running."""
        return self.power == protocol.POWER_OFF and self.agent_up and self.agent_state not in _ANNOUNCED_DOWN

    def _beat_age(self) -> float | None:
        return None if self._alive_at is None else time.monotonic() - self._alive_at

    def _agent_live(self) -> bool:
        """Whether the agent runs for sure: a fresh live ALIVE, no shutdown announced or forced."""
        age = self._beat_age()
        return (
            self.agent_up
            and age is not None
            and age <= FRESH_BEATS * self._beat_gap
            and self.agent_state not in _ANNOUNCED_DOWN
            and not self._forced
        )

    # Evidence ----------------------------------------------------------------------

    def _valid(self, what: str, payload: str, allowed: tuple[str, ...]) -> bool:
        """Return whether `payload` is one of `allowed`; log what is ignored."""
        if payload in allowed:
            return True
        LOGGER.warning("Server %s: ignoring %s %r", self.config.server_id, what, payload[:64])
        return False

    @callback
    def async_heartbeat(self, payload: str, retained: bool) -> None:
        """Take the agent's heartbeat: ALIVE, or DEAD (its Will, or before powering off)."""
        if not self._valid("heartbeat", payload, (protocol.ALIVE, protocol.DEAD)):
            return
        previous = self.heartbeat
        was_up = self.agent_up
        was_contradicted = self.contradicted
        self.heartbeat = payload
        if payload == protocol.ALIVE:
            if previous == protocol.DEAD:
                # A new agent session: what it said before no longer holds.
                self.agent_state = None
                self._new_session = True
                self._down_live = False
                self._alive_at = None
                self._beat_gap = HEARTBEAT_S
            if not retained:
                now = time.monotonic()
                if self._alive_at is not None:
                    self._beat_gap = max(self._beat_gap, now - self._alive_at)
                self._alive_at = now
            if previous == protocol.DEAD or not retained:
                self._agent_stale = False
                self._overdue = False
            if not retained and self.power == protocol.POWER_OFF:
                LOGGER.warning(
                    "Server %s: the agent is alive but node %s's power sense reads OFF",
                    self.config.server_id,
                    self.config.relay_node,
                )
                self._raise(Issue.POWER_SENSE_MISMATCH)
            self._forced = False
            if not was_up and self.agent_up and self._lost_logged:
                self._lost_logged = False
                LOGGER.info("Server %s: the agent is connected again", self.config.server_id)
        else:
            self._alive_at = None
            if previous == protocol.ALIVE:
                self._agent_died(was_contradicted)
                self._lost_logged = True
        self._update()

    @callback
    def _agent_died(self, was_contradicted: bool) -> None:
        if was_contradicted:
            LOGGER.warning(
                "Server %s: the agent died (its Will): node %s's power sense (OFF) was right",
                self.config.server_id,
                self.config.relay_node,
            )
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(Issue.POWER_SENSE_MISMATCH))
            return
        if self.agent_state in _ANNOUNCED_DOWN or self._forced or self.power == protocol.POWER_OFF:
            # expected (a shutdown, a force off, no power): once, at info
            LOGGER.info("Server %s: the agent disconnected", self.config.server_id)
        elif self.power == protocol.POWER_ON:
            LOGGER.warning(
                "Server %s: the agent stopped reporting without announcing a shutdown; "
                "the power sense still reads ON, so the server stays on",
                self.config.server_id,
            )
        elif self.power is None:
            LOGGER.warning(
                "Server %s: the agent stopped reporting without announcing a shutdown; "
                "without a power sense the server is shown off",
                self.config.server_id,
            )
            self._raise(Issue.AGENT_LOST)

    @callback
    def async_agent_state(self, payload: str, retained: bool = False) -> None:
        """Take the agent's own state: STARTING, ONLINE, SHUTTING_DOWN or OFFLINE."""
        if not self._valid("state", payload, protocol.ServerState.ALL):
            return
        self.agent_state = payload
        if payload not in _ANNOUNCED_DOWN:
            self._down_live = False
        elif not retained:
            self._down_live = True
        self._new_session = False
        self._update()

    @callback
    def async_power(self, payload: str) -> None:
        """Take the relay node's power sense: ON or OFF."""
        if not self._valid("power sense", payload, (protocol.POWER_ON, protocol.POWER_OFF)):
            return
        changed = payload != self.power
        if changed:
            self._overdue = False
        self.power = payload
        if payload == protocol.POWER_OFF:
            if self._agent_live():
                # A running server's button must never be pressed: the agent's live
                # report wins until its Will or until its heartbeat goes stale.
                if changed:
                    LOGGER.warning(
                        "Server %s: node %s's power sense reads OFF, but the agent said ALIVE "
                        "%.0f s ago and %s; following the agent until its Will (DEAD) or no "
                        "heartbeat for %.0f s",
                        self.config.server_id,
                        self.config.relay_node,
                        self._beat_age() or 0.0,
                        self.agent_state or "has not said its state",
                        FRESH_BEATS * self._beat_gap,
                    )
            else:
                self._agent_stale = True
                ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(Issue.POWER_SENSE_MISMATCH))
        self._update()

    @callback
    def async_node_status(self, payload: str) -> None:
        """Take the relay node's availability: ONLINE or OFFLINE."""
        if not self._valid("relay node status", payload, (protocol.ONLINE, protocol.OFFLINE)):
            return
        self.node_status = payload
        self._notify()

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

    # The state machine ---------------------------------------------------------------

    def _evidence(self) -> PowerState | None:
        """Return what the evidence says, given where the server was."""
        state = None if self._agent_stale else self.agent_state
        if self.agent_up:
            if state == protocol.ServerState.STARTING:
                return PowerState.STARTING
            if state in _ANNOUNCED_DOWN:
                return PowerState.STOPPING
            if state is None and self._new_session:
                return PowerState.STARTING
            return PowerState.ON
        if self.power == protocol.POWER_OFF:
            return PowerState.OFF
        if self.power == protocol.POWER_ON:
            if self._overdue:
                return PowerState.ON
            if state in _ANNOUNCED_DOWN:
                return PowerState.STOPPING
            if self.state in (PowerState.ON, PowerState.STOPPING):
                return self.state
            return PowerState.STARTING
        if self.heartbeat == protocol.DEAD:
            return PowerState.OFF
        return None

    @callback
    def _update(self) -> None:
        new = self._evidence()
        old = self.state
        if new is not old:
            self.state = new
            LOGGER.info("Server %s: %s -> %s", self.config.server_id, old, new)
            self._transition(old, new)
        # Reaching the state for real (not by a grace running out) solves earlier issues.
        if (new is PowerState.ON and self.agent_up) or new is PowerState.OFF:
            for issue in _SOLVED_BY[new]:
                ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(issue))
        self._watch_heartbeat()
        self._notify()

    @callback
    def _watch_heartbeat(self) -> None:
        """While the power sense contradicts the agent, end that once the heartbeat is stale."""
        if self._stale_timer:
            self._stale_timer()
            self._stale_timer = None
        age = self._beat_age()
        if not self.contradicted or age is None:
            return
        window = FRESH_BEATS * self._beat_gap

        @callback
        def stale(_now: datetime) -> None:
            self._stale_timer = None
            LOGGER.warning(
                "Server %s: no heartbeat from the agent for %.0f s; following node %s's power sense (OFF)",
                self.config.server_id,
                window,
                self.config.relay_node,
            )
            self._agent_stale = True
            self._update()

        self._stale_timer = async_call_later(
            self.hass, max(window - age, 0.0), HassJob(stale, cancel_on_shutdown=True)
        )

    @callback
    def _transition(self, old: PowerState | None, new: PowerState | None) -> None:
        command = self.command
        if old is PowerState.STOPPING and (
            (new is PowerState.ON and not self._overdue)
            or (new is PowerState.STARTING and command is Command.STOP)
        ):
            LOGGER.warning("Server %s: %s while stopping", self.config.server_id, new)
            self._raise(Issue.STOP_INTERRUPTED, state=str(new))
            self._end(Command.STOP)
        if (old is PowerState.STARTING and new is PowerState.OFF) or (
            command is Command.START and new is PowerState.STOPPING
        ):
            LOGGER.warning("Server %s: %s while starting", self.config.server_id, new)
            self._raise(Issue.START_INTERRUPTED, state=str(new))
            self._end(Command.START)
        if new is PowerState.STARTING and Command.START not in self._timers:
            self._arm(Command.START)
        if new is PowerState.STOPPING and Command.STOP not in self._timers:
            self._arm(Command.STOP)
        # A start ends when the server is on or heads down; a stop, when it is off or
        # comes back (a stop sent while starting keeps waiting through starting -> on).
        if new in (PowerState.ON, PowerState.STOPPING, PowerState.OFF):
            self._end(Command.START)
        if new is PowerState.OFF or old is PowerState.STOPPING:
            self._end(Command.STOP)

    @callback
    def _arm(self, kind: Command) -> None:
        if cancel := self._timers.pop(kind, None):
            cancel()
        delay = self.config.start_grace if kind is Command.START else self.config.stop_grace

        @callback
        def expired(_now: datetime) -> None:
            self._expired(kind)

        self._timers[kind] = async_call_later(self.hass, delay, HassJob(expired, cancel_on_shutdown=True))

    @callback
    def _end(self, kind: Command) -> None:
        """Stop waiting for `kind`: its target was reached or contradicted."""
        if cancel := self._timers.pop(kind, None):
            cancel()
        if self.command is kind:
            self.command = None

    @callback
    def _expired(self, kind: Command) -> None:
        """End a grace period: let the evidence decide and say what happened."""
        self._timers.pop(kind, None)
        asked = self.command is kind
        if asked:
            self.command = None
        grace = _GRACE[kind]
        if self.state is grace.moving:
            if self.power == protocol.POWER_ON and not self.agent_up:
                self._overdue = True
                self._update()
                if kind is Command.STOP and not self._down_live:
                    # HA never saw this shutdown: the announcement is a retained one from
                    # an earlier boot and the server may as well be booting, so no force
                    # off is offered (stop_still_powered's fix would cut a booting server)
                    self._raise(Issue.START_AGENT_SILENT, grace=f"{self.config.stop_grace:g}")
                else:
                    self._raise(grace.powered_silent)
            else:
                self._raise(grace.stuck)
        elif asked and self.state in grace.unmoved:
            self._raise(grace.no_response)

    @callback
    def async_stop(self) -> None:
        """Cancel the grace timers (the entry unloads)."""
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
        self.command = None
        if self._stale_timer:
            self._stale_timer()
            self._stale_timer = None

    # Repair issues ------------------------------------------------------------------

    def _issue_id(self, issue: Issue) -> str:
        return f"{self.config.server_id}_{issue}"

    @callback
    def _raise(self, issue: Issue, **placeholders: str) -> None:
        grace = self.config.start_grace if issue.startswith("start") else self.config.stop_grace
        fixable = issue in _FIXABLE
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id(issue),
            is_fixable=fixable,
            data={"entry_id": self.entry_id, "subentry_id": self.config.subentry_id} if fixable else None,
            severity=ir.IssueSeverity.WARNING,
            translation_key=issue,
            translation_placeholders={
                "name": self.config.name,
                "server_id": self.config.server_id,
                "relay_node": self.config.relay_node,
                "grace": f"{grace:g}",
                "state": str(self.state),
                **placeholders,
            },
        )

    @callback
    def async_clear_issues(self, keep: tuple[Issue, ...] = ()) -> None:
        """Delete the server's repair issues (a new command, or the server was removed)."""
        for issue in Issue:
            if issue not in keep:
                ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(issue))

    # Commands -------------------------------------------------------------------------

    def _error(self, key: str, **placeholders: str) -> HomeAssistantError:
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={"name": self.config.name, **placeholders},
        )

    async def _publish(self, topic: str, payload: str) -> None:
        try:
            await mqtt.async_publish(self.hass, topic, payload, qos=1, retain=False)
        except HomeAssistantError as err:
            raise self._error("publish_failed", error=str(err)) from err

    async def _power_button(self, cmd: str) -> None:
        node = self.config.relay_node
        if self.node_status == protocol.OFFLINE:
            # A command to an offline node is lost (never retained): say so now.
            raise self._error("relay_node_offline", relay_node=node)
        payload = protocol.sign_command(self.config.node_key, node, cmd, int(time.time()))
        await self._publish(protocol.node_topic(self.base, node, protocol.NODE_POWER_SET), payload)

    @callback
    def _begin(self, kind: Command) -> None:
        # The power sense disagreeing with the agent is not the command's business.
        self.async_clear_issues(keep=(Issue.POWER_SENSE_MISMATCH,))
        self.command = kind
        self._arm(kind)

    async def async_turn_on(self) -> None:
        """Press the power button, unless the server is on or starting."""
        if self.contradicted:
            # Not a silent no-op: the user sees off on the node's side and must know why.
            raise self._error("power_sense_contradicts", relay_node=self.config.relay_node)
        if self.state in (PowerState.ON, PowerState.STARTING):
            LOGGER.debug("Server %s is %s: not pressing its power button", self.config.server_id, self.state)
            return
        if self.state is PowerState.STOPPING:
            raise self._error("server_stopping")
        if self.state is None:
            raise self._error("server_state_unknown")
        await self._power_button(protocol.PRESS)
        self._begin(Command.START)

    async def async_turn_off(self) -> None:
        """Ask the agent to shut the server down cleanly."""
        if self.state in (PowerState.OFF, PowerState.STOPPING):
            LOGGER.debug("Server %s is %s: no shutdown sent", self.config.server_id, self.state)
            return
        if not self.agent_up:
            raise self._error("agent_not_connected")
        server = self.config.server_id
        payload = protocol.sign_command(self.config.command_key, server, protocol.SHUTDOWN, int(time.time()))
        await self._publish(protocol.server_topic(self.base, server, protocol.SERVER_SYSTEM), payload)
        self._begin(Command.STOP)

    async def async_force_off(self) -> None:
        """Hold the power button: the server loses power without shutting down."""
        await self._power_button(protocol.HOLD)
        self._forced = True
        self._begin(Command.STOP)

    async def async_refresh(self) -> None:
        """Ask the agent and the relay node to republish their state."""
        await self._publish(
            protocol.server_topic(self.base, self.config.server_id, protocol.SERVER_REFRESH), REFRESH_PAYLOAD
        )
        await self._publish(
            protocol.node_topic(self.base, self.config.relay_node, protocol.NODE_REFRESH), REFRESH_PAYLOAD
        )

    def diagnostics(self) -> dict[str, Any]:
        """Return the server's evidence, state and pending command."""
        return {
            "state": self.state.value if self.state else None,
            "heartbeat": self.heartbeat,
            "agent_state": self.agent_state,
            "power_sense": self.power,
            "power_sense_contradicts_agent": self.contradicted,
            "live_heartbeat_age_s": None if (age := self._beat_age()) is None else round(age, 1),
            "relay_node_status": self.node_status,
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
        self._by_node = {s.config.relay_node: s for s in self.servers.values()}
        self._loaded = _snapshot(entry)

    @callback
    def async_start(self) -> None:
        """Follow subentry changes."""
        self.entry.async_on_unload(
            async_dispatcher_connect(self.hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._entry_changed)
        )

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
    def async_connection(self, connected: bool) -> None:
        """Follow HA's MQTT connection."""
        for server in self.servers.values():
            server.async_mqtt_connected(connected)

    @callback
    def _entry_changed(self, change: ConfigEntryChange, entry: ConfigEntry[Any]) -> None:
        """Reload when a server subentry was added, changed or removed."""
        if entry.entry_id != self.entry.entry_id or change is not ConfigEntryChange.UPDATED:
            return
        if _snapshot(entry) != self._loaded:
            self._loaded = _snapshot(entry)
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
