"""The power state machine of one server: evidence in; state, repair issues, timers and commands out.

Pure: no Home Assistant, no clock of its own (every input carries the monotonic time).
docs/servers.md describes the rules; servers.py feeds it MQTT and applies what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from . import protocol
from .const import LOGGER

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
    REBOOT_NO_RESPONSE = "reboot_no_response"
    REBOOT_NO_RETURN = "reboot_no_return"
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
        Issue.REBOOT_NO_RETURN,
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
    REBOOT = "reboot"


class Action(StrEnum):
    """What the user asks of the server."""

    TURN_ON = "turn_on"
    TURN_OFF = "turn_off"
    FORCE_OFF = "force_off"
    REBOOT = "reboot"


_COMMANDS: Mapping[Action, Command] = {
    Action.TURN_ON: Command.START,
    Action.TURN_OFF: Command.STOP,
    Action.FORCE_OFF: Command.STOP,
    Action.REBOOT: Command.REBOOT,
}


class PowerOn(StrEnum):
    """How a server is turned on; the values are stored in its subentry."""

    RELAY = "relay"
    WOL_NODE = "wol_node"
    WOL_HA = "wol_ha"
    NONE = "none"


class Refusal(StrEnum):
    """Why an action is refused; the values are translation keys of exceptions."""

    SERVER_STATE_UNKNOWN = "server_state_unknown"
    SERVER_STOPPING = "server_stopping"
    AGENT_NOT_CONNECTED = "agent_not_connected"
    REBOOT_AGENT_NOT_CONNECTED = "reboot_agent_not_connected"
    RELAY_NODE_OFFLINE = "relay_node_offline"
    NO_RELAY_NODE = "no_relay_node"
    POWER_SENSE_CONTRADICTS = "power_sense_contradicts"
    NO_POWER_ON = "no_power_on"


class Timer(StrEnum):
    """The machine's timers: the grace periods and the heartbeat's freshness."""

    START = Command.START.value
    STOP = Command.STOP.value
    REBOOT = Command.REBOOT.value
    STALE = "stale"


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


# Outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RaiseIssue:
    """Create (or replace) a repair issue; `placeholders` holds grace, state and extras."""

    issue: Issue
    placeholders: Mapping[str, str]
    fixable: bool = False


@dataclass(frozen=True, slots=True)
class ClearIssue:
    """Delete a repair issue (a no-op when it is not raised)."""

    issue: Issue


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Start a timer, replacing a running one of the same kind; call `expire` when it fires."""

    timer: Timer
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop a running timer."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class Notify:
    """The evidence or the state changed: the entities write their state."""


@dataclass(frozen=True, slots=True)
class Send:
    """Sign and publish `cmd`: to the agent (SHUTDOWN, REBOOT) or to the relay node (PRESS, HOLD, WOL).

    `from_ha`: Home Assistant sends the WOL magic packet itself instead.
    """

    cmd: str
    to_agent: bool
    from_ha: bool = False


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the action: why, with the placeholders of its error."""

    key: Refusal
    placeholders: Mapping[str, str] = field(default_factory=dict)


Effect = RaiseIssue | ClearIssue | ArmTimer | CancelTimer | Notify


def clear_issues(keep: tuple[Issue, ...] = ()) -> list[Effect]:
    """Return the effects that delete every issue of a server but those in `keep`."""
    return [ClearIssue(issue) for issue in Issue if issue not in keep]


@dataclass(frozen=True, slots=True)
class PowerConfig:
    """What the machine needs to know of its server."""

    server_id: str
    # None: a server without a node (powered on by HA's Wake-on-LAN, or not at all)
    relay_node: str | None
    start_grace: float
    stop_grace: float
    power_on: PowerOn = field(default=PowerOn.RELAY, kw_only=True)


@dataclass(slots=True)
class _Session:
    """What one connection of the agent said; a reconnect (DEAD -> ALIVE) starts a new one."""

    # The agent connected again and has not said its state yet: it is starting.
    new: bool = False
    state: str | None = None
    # HA saw the agent announce its shutdown live, not a retained one from an earlier boot.
    down_live: bool = False
    # When the last live (not retained) ALIVE arrived, and the largest gap between two.
    alive_at: float | None = None
    beat_gap: float = HEARTBEAT_S


class Evidence:
    """What the agent and the relay node last said, and how far each report is trusted."""

    def __init__(self) -> None:
        self.heartbeat: str | None = None
        self.power: str | None = None
        self.node_status: str | None = None
        self.session = _Session()
        # After the power sense reads OFF, the agent's retained messages belong to the
        # previous power cycle until it shows life again.
        self.stale = False
        # A grace period ran out with the machine powered and the agent silent: the
        # power sense wins from then on, until new evidence arrives.
        self.overdue = False
        # A force off was sent: the power sense reading OFF is believed at once.
        self.forced = False
        # Whether the server's TCP port answered at the last check (None: no answer in
        # this power cycle yet, or no check configured).
        self.reachable: bool | None = None
        # After a shutdown announced live, an answer counts only once the port was gone.
        self.await_gone = False

    @property
    def agent_state(self) -> str | None:
        """The agent's last state in its current session."""
        return self.session.state

    @property
    def agent_up(self) -> bool:
        """Whether the agent reports life in the current power cycle."""
        return self.heartbeat == protocol.ALIVE and not self.stale

    @property
    def contradicted(self) -> bool:
        """Whether the power sense reads OFF while the agent reports the server running."""
        return self.power == protocol.POWER_OFF and self.agent_up and self.agent_state not in _ANNOUNCED_DOWN

    def beat_age(self, now: float) -> float | None:
        """Seconds since the last live ALIVE of this session, if any."""
        alive_at = self.session.alive_at
        return None if alive_at is None else now - alive_at

    def window(self) -> float:
        """How long a live ALIVE stays fresh."""
        return FRESH_BEATS * self.session.beat_gap

    def agent_live(self, now: float) -> bool:
        """Whether the agent runs for sure: a fresh live ALIVE, no shutdown announced or forced."""
        age = self.beat_age(now)
        return (
            self.agent_up
            and age is not None
            and age <= self.window()
            and self.agent_state not in _ANNOUNCED_DOWN
            and not self.forced
        )

    def take_heartbeat(self, payload: str, retained: bool, now: float) -> str | None:
        """Record a heartbeat; return the one before it."""
        previous = self.heartbeat
        self.heartbeat = payload
        if payload != protocol.ALIVE:
            self.session.alive_at = None
            return previous
        if previous == protocol.DEAD or (previous is None and not retained):
            # A new agent session: what it said before no longer holds. A live first
            # ALIVE is one too (a new agent, nothing retained): its state follows.
            self.session = _Session(new=True)
        session = self.session
        if not retained:
            if session.alive_at is not None:
                session.beat_gap = max(session.beat_gap, now - session.alive_at)
            session.alive_at = now
        if previous == protocol.DEAD or not retained:
            self.stale = False
            self.overdue = False
        self.forced = False
        return previous

    def take_agent_state(self, payload: str, retained: bool) -> None:
        """Record the agent's state."""
        session = self.session
        session.state = payload
        if payload not in _ANNOUNCED_DOWN:
            session.down_live = False
        elif not retained:
            session.down_live = True
            # the server is going down: only an answer after it is back counts
            self.await_gone = True
        session.new = False

    def take_power(self, payload: str) -> bool:
        """Record the power sense; return whether it changed."""
        changed = payload != self.power
        if changed:
            self.overdue = False
        if payload == protocol.POWER_OFF:
            # an answer from before the power went belongs to the last power cycle
            self.reachable = None
        self.power = payload
        return changed

    def fused(self, previous: PowerState | None, rebooting: bool = False) -> PowerState | None:
        """Return what the evidence says, given where the server was and whether it reboots."""
        state = None if self.stale else self.agent_state
        if self.agent_up:
            if state == protocol.ServerState.STARTING:
                return PowerState.STARTING
            if state in _ANNOUNCED_DOWN:
                return PowerState.STOPPING
            if state is None and self.session.new:
                return PowerState.STARTING
            return PowerState.ON
        if self.reachable and not self.await_gone:
            # something answers on the server's port: it runs (its agent is not up, or crashed)
            return PowerState.ON
        if self.power == protocol.POWER_OFF:
            return PowerState.OFF
        if self.power == protocol.POWER_ON:
            if self.overdue:
                return PowerState.ON
            if state in _ANNOUNCED_DOWN:
                return PowerState.STOPPING
            if previous in (PowerState.ON, PowerState.STOPPING):
                return previous
            return PowerState.STARTING
        if self.heartbeat == protocol.DEAD:
            # The agent announced the reboot it was asked for: it went down to come back.
            return PowerState.STOPPING if rebooting and state in _ANNOUNCED_DOWN else PowerState.OFF
        return None


class PowerMachine:
    """One server's fused power state; each input returns the effects to apply, in order."""

    def __init__(self, config: PowerConfig) -> None:
        self.config = config
        self.evidence = Evidence()
        self.state: PowerState | None = None
        self.command: Command | None = None
        # The agent's loss was logged: its return is logged once too.
        self._lost_logged = False
        self._armed: set[Timer] = set()
        self._now = 0.0
        self._out: list[Effect] = []

    def _take(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    # Evidence ------------------------------------------------------------------------

    def on_heartbeat(self, payload: str, retained: bool, now: float) -> list[Effect]:
        """Take the agent's heartbeat: ALIVE, or DEAD (its Will, or before powering off)."""
        self._now = now
        evidence = self.evidence
        was_up = evidence.agent_up
        was_contradicted = evidence.contradicted
        previous = evidence.take_heartbeat(payload, retained, now)
        if payload == protocol.ALIVE:
            if not retained and evidence.power == protocol.POWER_OFF:
                LOGGER.warning(
                    "Server %s: the agent is alive but node %s's power sense reads OFF",
                    self.config.server_id,
                    self.config.relay_node,
                )
                self._raise(Issue.POWER_SENSE_MISMATCH)
            if not was_up and evidence.agent_up and self._lost_logged:
                self._lost_logged = False
                LOGGER.info("Server %s: the agent is connected again", self.config.server_id)
        elif previous == protocol.ALIVE:
            self._agent_died(was_contradicted)
            self._lost_logged = True
        self._update()
        return self._take()

    def _agent_died(self, was_contradicted: bool) -> None:
        server = self.config.server_id
        evidence = self.evidence
        if was_contradicted:
            LOGGER.warning(
                "Server %s: the agent died (its Will): node %s's power sense (OFF) was right",
                server,
                self.config.relay_node,
            )
            self._out.append(ClearIssue(Issue.POWER_SENSE_MISMATCH))
            return
        if evidence.agent_state in _ANNOUNCED_DOWN or evidence.forced or evidence.power == protocol.POWER_OFF:
            # expected (a shutdown, a force off, no power): once, at info
            LOGGER.info("Server %s: the agent disconnected", server)
        elif evidence.power == protocol.POWER_ON:
            LOGGER.warning(
                "Server %s: the agent stopped reporting without announcing a shutdown; "
                "the power sense still reads ON, so the server stays on",
                server,
            )
        elif evidence.reachable and not evidence.await_gone:
            LOGGER.warning(
                "Server %s: the agent stopped reporting without announcing a shutdown; "
                "its port still answers, so the server stays on",
                server,
            )
        elif evidence.power is None:
            LOGGER.warning(
                "Server %s: the agent stopped reporting without announcing a shutdown; "
                "without a power sense the server is shown off",
                server,
            )
            self._raise(Issue.AGENT_LOST)

    def on_agent_state(self, payload: str, retained: bool, now: float) -> list[Effect]:
        """Take the agent's own state: STARTING, ONLINE, SHUTTING_DOWN or OFFLINE."""
        self._now = now
        self.evidence.take_agent_state(payload, retained)
        self._update()
        return self._take()

    def on_power(self, payload: str, now: float) -> list[Effect]:
        """Take the relay node's power sense: ON or OFF."""
        self._now = now
        evidence = self.evidence
        changed = evidence.take_power(payload)
        if payload == protocol.POWER_OFF:
            if evidence.agent_live(now):
                # A running server's button must never be pressed: the agent's live
                # report wins until its Will or until its heartbeat goes stale.
                if changed:
                    LOGGER.warning(
                        "Server %s: node %s's power sense reads OFF, but the agent said ALIVE "
                        "%.0f s ago and %s; following the agent until its Will (DEAD) or no "
                        "heartbeat for %.0f s",
                        self.config.server_id,
                        self.config.relay_node,
                        evidence.beat_age(now) or 0.0,
                        evidence.agent_state or "has not said its state",
                        evidence.window(),
                    )
            else:
                evidence.stale = True
                self._out.append(ClearIssue(Issue.POWER_SENSE_MISMATCH))
        self._update()
        return self._take()

    def on_reachable(self, answered: bool | None, now: float) -> list[Effect]:
        """Take a check of the server's TCP port: an answer means on; no answer proves nothing.

        None: the checker is gone (the node went offline): its last answer no longer holds.
        """
        self._now = now
        evidence = self.evidence
        if answered is False:
            evidence.await_gone = False
        if evidence.reachable is answered:
            return []
        evidence.reachable = answered
        self._update()
        return self._take()

    def on_node_status(self, payload: str) -> list[Effect]:
        """Take the relay node's availability: ONLINE or OFFLINE."""
        self.evidence.node_status = payload
        return [Notify()]

    # The state machine -----------------------------------------------------------------

    def _update(self) -> None:
        new = self.evidence.fused(self.state, rebooting=self.command is Command.REBOOT)
        old = self.state
        if new is not old:
            self.state = new
            LOGGER.info("Server %s: %s -> %s", self.config.server_id, old or "unknown", new or "unknown")
            self._transition(old, new)
        # Reaching the state for real (not by a grace running out) solves earlier issues.
        if (new is PowerState.ON and self.evidence.agent_up) or new is PowerState.OFF:
            self._out.extend(ClearIssue(issue) for issue in _SOLVED_BY[new])
        self._watch_heartbeat()
        self._out.append(Notify())

    def _watch_heartbeat(self) -> None:
        """While the power sense contradicts the agent, end that once the heartbeat is stale."""
        self._cancel(Timer.STALE)
        age = self.evidence.beat_age(self._now)
        if self.evidence.contradicted and age is not None:
            self._arm(Timer.STALE, max(self.evidence.window() - age, 0.0))

    def _transition(self, old: PowerState | None, new: PowerState | None) -> None:
        command = self.command
        if old is PowerState.STOPPING and (
            # an answering port during a reboot is the server back, not a shutdown undone
            (new is PowerState.ON and not self.evidence.overdue and self.evidence.agent_up)
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
        if new is PowerState.STARTING and Timer.START not in self._armed:
            self._arm_grace(Command.START)
        # A reboot's own grace covers the way down and back up.
        if new is PowerState.STOPPING and Timer.STOP not in self._armed and command is not Command.REBOOT:
            self._arm_grace(Command.STOP)
        # A start ends when the server is on or heads down; a stop, when it is off or
        # comes back (a stop sent while starting keeps waiting through starting -> on).
        if new in (PowerState.ON, PowerState.STOPPING, PowerState.OFF):
            self._end(Command.START)
        if new is PowerState.OFF or old is PowerState.STOPPING:
            self._end(Command.STOP)
        # A reboot ends when the server is back: booting again, or on (logind refused).
        if new in (PowerState.STARTING, PowerState.ON) and old in (PowerState.STOPPING, PowerState.OFF):
            self._end(Command.REBOOT)

    # Timers --------------------------------------------------------------------------

    def _arm(self, timer: Timer, delay: float) -> None:
        self._armed.add(timer)
        self._out.append(ArmTimer(timer, delay))

    def _cancel(self, timer: Timer) -> None:
        if timer in self._armed:
            self._armed.discard(timer)
            self._out.append(CancelTimer(timer))

    def _grace(self, kind: Command) -> float:
        if kind is Command.REBOOT:
            return self.config.stop_grace + self.config.start_grace
        return self.config.start_grace if kind is Command.START else self.config.stop_grace

    def _arm_grace(self, kind: Command) -> None:
        self._arm(Timer(kind.value), self._grace(kind))

    def _end(self, kind: Command) -> None:
        """Stop waiting for `kind`: its target was reached or contradicted."""
        self._cancel(Timer(kind.value))
        if self.command is kind:
            self.command = None

    def expire(self, timer: Timer, now: float) -> list[Effect]:
        """Take the end of a timer an `ArmTimer` started."""
        self._now = now
        self._armed.discard(timer)
        if timer is Timer.STALE:
            LOGGER.warning(
                "Server %s: no heartbeat from the agent for %.0f s; following node %s's power sense (OFF)",
                self.config.server_id,
                self.evidence.window(),
                self.config.relay_node,
            )
            self.evidence.stale = True
            self._update()
        elif timer is Timer.REBOOT:
            self._reboot_over()
        else:
            self._grace_over(Command(timer.value))
        return self._take()

    def _grace_over(self, kind: Command) -> None:
        """End a grace period: let the evidence decide and say what happened."""
        asked = self.command is kind
        if asked:
            self.command = None
        grace = _GRACE[kind]
        if self.state is grace.moving:
            if self.evidence.power == protocol.POWER_ON and not self.evidence.agent_up:
                self.evidence.overdue = True
                self._update()
                if kind is Command.STOP and not self.evidence.session.down_live:
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

    def _reboot_over(self) -> None:
        """End a reboot's grace: it never began, or the server did not come back."""
        if self.command is not Command.REBOOT:
            return
        self.command = None
        if self.state is PowerState.ON and self.evidence.agent_up:
            self._raise(Issue.REBOOT_NO_RESPONSE)
            return
        if self.evidence.power == protocol.POWER_ON and not self.evidence.agent_up:
            # powered and silent: the power sense wins, as after a start's grace
            self.evidence.overdue = True
        self._update()
        self._raise(Issue.REBOOT_NO_RETURN)

    def stop(self) -> list[Effect]:
        """Cancel every timer and forget the pending command (the entry unloads)."""
        for timer in sorted(self._armed):
            self._cancel(timer)
        self.command = None
        return self._take()

    # Repair issues ---------------------------------------------------------------------

    def _raise(self, issue: Issue, **placeholders: str) -> None:
        kind = next((command for command in Command if issue.startswith(command.value)), Command.STOP)
        grace = self._grace(kind)
        self._out.append(
            RaiseIssue(
                issue,
                {"grace": f"{grace:g}", "state": str(self.state), **placeholders},
                fixable=issue in _FIXABLE,
            )
        )

    # Commands --------------------------------------------------------------------------

    def decide(self, action: Action) -> Send | Refuse | None:
        """Return what `action` sends, why it is refused, or None when nothing is to do."""
        if action is Action.FORCE_OFF:
            return self._press(protocol.HOLD)
        if action is Action.TURN_OFF:
            if self.state in (PowerState.OFF, PowerState.STOPPING):
                LOGGER.debug("Server %s is %s: no shutdown sent", self.config.server_id, self.state)
                return None
            if not self.evidence.agent_up:
                return Refuse(Refusal.AGENT_NOT_CONNECTED)
            return Send(protocol.SHUTDOWN, to_agent=True)
        if action is Action.REBOOT:
            return self._reboot()
        if self.evidence.contradicted:
            # Not a silent no-op: the user sees off on the node's side and must know why.
            return Refuse(Refusal.POWER_SENSE_CONTRADICTS, {"relay_node": self.config.relay_node or ""})
        if self.state in (PowerState.ON, PowerState.STARTING):
            LOGGER.debug("Server %s is %s: not pressing its power button", self.config.server_id, self.state)
            return None
        if self.state is PowerState.STOPPING:
            return Refuse(Refusal.SERVER_STOPPING)
        if self.state is None:
            return Refuse(Refusal.SERVER_STATE_UNKNOWN)
        return self._power_on()

    def _power_on(self) -> Send | Refuse:
        method = self.config.power_on
        if method is PowerOn.NONE:
            return Refuse(Refusal.NO_POWER_ON)
        if method is PowerOn.WOL_HA:
            return Send(protocol.WOL, to_agent=False, from_ha=True)
        return self._press(protocol.WOL if method is PowerOn.WOL_NODE else protocol.PRESS)

    def _reboot(self) -> Send | Refuse | None:
        if self.state is PowerState.STOPPING:
            LOGGER.debug("Server %s is stopping: no reboot sent", self.config.server_id)
            return None
        if not self.evidence.agent_up:
            return Refuse(Refusal.REBOOT_AGENT_NOT_CONNECTED)
        return Send(protocol.REBOOT, to_agent=True)

    def _press(self, cmd: str) -> Send | Refuse:
        if self.config.relay_node is None:
            return Refuse(Refusal.NO_RELAY_NODE)
        if self.evidence.node_status == protocol.OFFLINE:
            # A command to an offline node is lost (never retained): say so now.
            return Refuse(Refusal.RELAY_NODE_OFFLINE, {"relay_node": self.config.relay_node})
        return Send(cmd, to_agent=False)

    def begin(self, action: Action, now: float) -> list[Effect]:
        """Start the grace period of the command `decide` returned, now that it is sent."""
        self._now = now
        if action is Action.FORCE_OFF:
            self.evidence.forced = True
        kind = _COMMANDS[action]
        # The power sense disagreeing with the agent is not the command's business.
        self._out.extend(clear_issues(keep=(Issue.POWER_SENSE_MISMATCH,)))
        if kind is Command.REBOOT:
            # a shutdown asked before is superseded: the reboot's grace covers both ways
            self._cancel(Timer.STOP)
        self.command = kind
        self._arm_grace(kind)
        return self._take()
