"""The power state machine without Home Assistant: evidence sequences against state, issues, timers, commands.

Each row plays a sequence of steps on a `World` that applies the machine's effects the way
servers.Server does (a clock, the armed timers, the raised issues, the commands sent):

    hb:ALIVE  st:ONLINE   the agent's heartbeat / state, live; `/r` appended: retained
    pw:ON     node:OFFLINE the relay node's power sense / status
    tcp:up  tcp:down       the server's TCP port answered / did not, at a check
    on  off  force reboot  turn on, turn off, force off, reboot (sent, refused or nothing)
    +61                    61 s pass; due timers fire in order
    =on  =unknown          the state is on / not known, here
    ?stop_no_response      exactly these issues are raised, here (`?` alone: none)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from custom_components.smartserver import protocol
from custom_components.smartserver.power import (
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
)

START_GRACE = 120
STOP_GRACE = 60
ACTIONS = {"on": Action.TURN_ON, "off": Action.TURN_OFF, "force": Action.FORCE_OFF, "reboot": Action.REBOOT}
REBOOT_GRACE = START_GRACE + STOP_GRACE

# Evidence of a running server as HA finds it after a restart: retained messages.
RUNNING = ("pw:ON", "hb:ALIVE/r", "st:ONLINE/r", "=on")
RUNNING_NO_SENSE = ("hb:ALIVE/r", "st:ONLINE/r", "=on")
# A running server whose agent reports now.
LIVE_RUNNING = ("pw:ON", "hb:ALIVE", "st:ONLINE", "=on")
# Retained evidence of a server shut down through its agent.
STOPPED = ("pw:OFF", "st:SHUTTING_DOWN/r", "hb:DEAD/r", "=off")
STOPPED_NO_SENSE = ("st:SHUTTING_DOWN/r", "hb:DEAD/r", "=off")


@dataclass
class World:
    """A PowerMachine driven like servers.Server drives it, with a clock of its own."""

    machine: PowerMachine = field(
        default_factory=lambda: PowerMachine(PowerConfig("nas", "relay1", START_GRACE, STOP_GRACE))
    )
    now: float = 1000.0
    timers: dict[Timer, float] = field(default_factory=dict)
    issues: dict[Issue, RaiseIssue] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    notified: int = 0

    def apply(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            match effect:
                case RaiseIssue():
                    self.issues[effect.issue] = effect
                case ClearIssue(issue):
                    self.issues.pop(issue, None)
                case ArmTimer(timer, delay):
                    self.timers[timer] = self.now + delay
                case CancelTimer(timer):
                    # the machine cancels only what it armed and has not seen fire
                    del self.timers[timer]
                case Notify():
                    self.notified += 1
        return effects

    def elapse(self, seconds: float) -> None:
        end = self.now + seconds
        while due := [timer for timer, at in self.timers.items() if at <= end]:
            timer = min(due, key=self.timers.__getitem__)
            self.now = self.timers.pop(timer)
            self.apply(self.machine.expire(timer, self.now))
        self.now = end

    def act(self, action: Action) -> None:
        decision = self.machine.decide(action)
        if isinstance(decision, Refuse):
            self.sent.append(f"refused:{decision.key}")
        elif decision is not None:
            assert decision.to_agent is (decision.cmd in (protocol.SHUTDOWN, protocol.REBOOT))
            self.sent.append(decision.cmd)
            self.apply(self.machine.begin(action, self.now))

    def step(self, step: str) -> None:
        kind, _, arg = step.partition(":")
        payload, _, flag = arg.partition("/")
        retained = flag == "r"
        machine = self.machine
        if step.startswith("="):
            expected = None if step == "=unknown" else PowerState(step[1:])
            assert machine.state is expected
        elif step.startswith("?"):
            assert set(self.issues) == {Issue(name) for name in step[1:].split(",") if name}
        elif step.startswith("+"):
            self.elapse(float(step[1:]))
        elif kind == "hb":
            self.apply(machine.on_heartbeat(payload, retained, self.now))
        elif kind == "st":
            self.apply(machine.on_agent_state(payload, retained, self.now))
        elif kind == "pw":
            self.apply(machine.on_power(payload, self.now))
        elif kind == "tcp":
            self.apply(machine.on_reachable(payload == "up", self.now))
        elif kind == "node":
            self.apply(machine.on_node_status(payload))
        else:
            self.act(ACTIONS[step])

    def play(self, *steps: str) -> World:
        for number, step in enumerate(steps):
            try:
                self.step(step)
            except AssertionError as err:
                raise AssertionError(f"step {number} {step!r}: {err}") from err
        return self


@dataclass(frozen=True)
class Row:
    """Steps, and what holds after them."""

    id: str
    steps: tuple[str, ...]
    state: str | None
    issues: tuple[str, ...] = ()
    timers: tuple[Timer, ...] = ()
    sent: tuple[str, ...] = ()


ROWS = (
    # What is known and what a command may do
    Row("unknown until evidence", (), None),
    Row("turn on is refused while unknown", ("on",), None, sent=("refused:server_state_unknown",)),
    Row("the power sense alone: starting", ("pw:ON",), "starting", timers=(Timer.START,)),
    Row("no power sense, agent DEAD: off", ("hb:DEAD/r",), "off"),
    Row("retained ONLINE from a live agent: on", RUNNING_NO_SENSE, "on"),
    Row("turn on when on sends nothing", (*RUNNING_NO_SENSE, "on"), "on"),
    Row(
        "turn on when starting sends nothing",
        ("hb:ALIVE/r", "st:STARTING/r", "on"),
        "starting",
        timers=(Timer.START,),
    ),
    Row(
        "turn on while stopping is refused",
        (*RUNNING, "st:SHUTTING_DOWN", "=stopping", "on"),
        "stopping",
        timers=(Timer.STOP,),
        sent=("refused:server_stopping",),
    ),
    Row(
        "turn off needs the agent",
        (*RUNNING, "hb:DEAD", "=on", "off"),
        "on",
        sent=("refused:agent_not_connected",),
    ),
    Row("turn off when off sends nothing", (*STOPPED, "off"), "off"),
    Row(
        "a relay node offline is not pressed",
        (*STOPPED, "node:OFFLINE", "on", "force", "node:ONLINE", "on"),
        "off",
        timers=(Timer.START,),
        sent=("refused:relay_node_offline", "refused:relay_node_offline", "PRESS"),
    ),
    # Starting
    Row(
        "start with a power sense, never optimistic",
        (*STOPPED, "on", "=off", "pw:ON", "=starting", "hb:ALIVE", "=starting", "st:STARTING", "st:ONLINE"),
        "on",
        sent=("PRESS",),
    ),
    Row(
        # a new server: nothing retained yet; the agent's first ALIVE is live
        "first start of a new agent, never on before its state",
        (
            "pw:OFF",
            "=off",
            "on",
            "pw:ON",
            "=starting",
            "hb:ALIVE",
            "=starting",
            "st:STARTING",
            "=starting",
            "st:ONLINE",
        ),
        "on",
        sent=("PRESS",),
    ),
    Row(
        "HA starts while a new agent runs: retained ALIVE then ONLINE, straight to on",
        ("pw:ON", "hb:ALIVE/r", "st:ONLINE/r"),
        "on",
    ),
    Row(
        "start without a power sense",
        (*STOPPED_NO_SENSE, "on", "=off", "hb:ALIVE", "st:STARTING", "=starting", "st:ONLINE"),
        "on",
        sent=("PRESS",),
    ),
    Row(
        "start without any response; a new command clears the issue",
        (*STOPPED, "on", f"+{START_GRACE - 1}", "?", "+2", "=off", "?start_no_response", "on"),
        "off",
        timers=(Timer.START,),
        sent=("PRESS", "PRESS"),
    ),
    Row(
        "a second press restarts the start grace",
        (*STOPPED, "on", f"+{START_GRACE - 20}", "on", "+40", "?", f"+{START_GRACE - 39}"),
        "off",
        issues=("start_no_response",),
        sent=("PRESS", "PRESS"),
    ),
    Row(
        "start powered, the agent silent: the power sense wins",
        (*STOPPED, "on", "pw:ON", "=starting", f"+{START_GRACE + 1}", "=on", "?start_agent_silent"),
        "on",
        issues=("start_agent_silent",),
        sent=("PRESS",),
    ),
    Row(
        "the silent agent reports at last",
        (*STOPPED, "on", "pw:ON", f"+{START_GRACE + 1}", "?start_agent_silent", "hb:ALIVE", "st:ONLINE"),
        "on",
        sent=("PRESS",),
    ),
    Row(
        "start stuck in STARTING",
        (*STOPPED_NO_SENSE, "on", "hb:ALIVE", "st:STARTING", f"+{START_GRACE + 1}"),
        "starting",
        issues=("start_timeout",),
        sent=("PRESS",),
    ),
    Row(
        "a button pressed by hand gets its grace too",
        (*STOPPED, "pw:ON", "=starting", f"+{START_GRACE + 1}"),
        "on",
        issues=("start_agent_silent",),
    ),
    Row(
        "start interrupted by the power going",
        (*STOPPED, "on", "pw:ON", "pw:OFF"),
        "off",
        issues=("start_interrupted",),
        sent=("PRESS",),
    ),
    Row(
        "a shutdown announced while a press is pending interrupts the start",
        (*RUNNING, "hb:DEAD", "pw:OFF", "=off", "on", "pw:ON", "hb:ALIVE", "st:SHUTTING_DOWN"),
        "stopping",
        issues=("start_interrupted",),
        timers=(Timer.STOP,),
        sent=("PRESS",),
    ),
    # Stopping
    Row(
        "stop with a power sense: off only when the power goes",
        (*RUNNING, "off", "=on", "st:SHUTTING_DOWN", "=stopping", "hb:DEAD", "=stopping", "pw:OFF", "off"),
        "off",
        sent=("SHUTDOWN",),
    ),
    Row(
        "stop without a power sense: off with the agent's DEAD",
        (*RUNNING_NO_SENSE, "off", "st:SHUTTING_DOWN", "=stopping", "hb:DEAD"),
        "off",
        sent=("SHUTDOWN",),
    ),
    Row(
        "stop without response",
        (*RUNNING, "off", f"+{STOP_GRACE + 1}"),
        "on",
        issues=("stop_no_response",),
        sent=("SHUTDOWN",),
    ),
    Row(
        "stop, still powered: the power sense wins until it reads OFF",
        (*RUNNING, "off", "st:SHUTTING_DOWN", "hb:DEAD", "=stopping", f"+{STOP_GRACE + 1}", "=on"),
        "on",
        issues=("stop_still_powered",),
        sent=("SHUTDOWN",),
    ),
    Row(
        "still powered, then off",
        (
            *RUNNING,
            "off",
            "st:SHUTTING_DOWN",
            "hb:DEAD",
            f"+{STOP_GRACE + 1}",
            "?stop_still_powered",
            "pw:OFF",
        ),
        "off",
        sent=("SHUTDOWN",),
    ),
    Row(
        "still powered, then the server boots again",
        (*RUNNING, "off", "st:SHUTTING_DOWN", "hb:DEAD", f"+{STOP_GRACE + 1}", "hb:ALIVE", "=starting"),
        "starting",
        issues=("stop_still_powered",),
        timers=(Timer.START,),
        sent=("SHUTDOWN",),
    ),
    Row(
        "still powered, then the server is on again: the hang is over",
        (*RUNNING, "off", "st:SHUTTING_DOWN", "hb:DEAD", f"+{STOP_GRACE + 1}", "hb:ALIVE", "st:ONLINE"),
        "on",
        sent=("SHUTDOWN",),
    ),
    Row(
        "stop stuck in SHUTTING_DOWN",
        (*RUNNING_NO_SENSE, "off", "st:SHUTTING_DOWN", f"+{STOP_GRACE + 1}"),
        "stopping",
        issues=("stop_timeout",),
        sent=("SHUTDOWN",),
    ),
    Row(
        "back ONLINE while stopping (logind refused); the stop grace no longer runs",
        (*RUNNING, "off", "st:SHUTTING_DOWN", "=stopping", "st:ONLINE", "=on", f"+{STOP_GRACE + 1}"),
        "on",
        issues=("stop_interrupted",),
        sent=("SHUTDOWN",),
    ),
    Row(
        "a reboot from the shell: no command, no issue",
        (*RUNNING, "st:OFFLINE", "hb:DEAD", "=stopping", "hb:ALIVE", "=starting", "st:ONLINE", "+121"),
        "on",
    ),
    Row(
        "a stop sent while starting waits through on",
        ("hb:ALIVE", "st:STARTING", "=starting", "off", "st:ONLINE", "=on", f"+{STOP_GRACE + 1}"),
        "on",
        issues=("stop_no_response",),
        sent=("SHUTDOWN",),
    ),
    Row(
        "a stop pending, then a new agent session: interrupted",
        (*RUNNING, "off", "st:SHUTTING_DOWN", "hb:DEAD", "=stopping", "hb:ALIVE", "=starting"),
        "starting",
        issues=("stop_interrupted",),
        timers=(Timer.START,),
        sent=("SHUTDOWN",),
    ),
    Row(
        "HA starts while the server boots: no force off offered",
        ("st:SHUTTING_DOWN/r", "hb:DEAD/r", "pw:ON", "=stopping", f"+{STOP_GRACE + 1}", "=on"),
        "on",
        issues=("start_agent_silent",),
    ),
    Row(
        "HA starts while the server boots: the agent comes up",
        (
            "st:SHUTTING_DOWN/r",
            "hb:DEAD/r",
            "pw:ON",
            f"+{STOP_GRACE + 1}",
            "hb:ALIVE",
            "=starting",
            "st:ONLINE",
        ),
        "on",
    ),
    # Reboot: the way down and back up under one grace, no stop issues
    Row(
        "reboot with a power sense: stopping until the agent is back",
        (
            *RUNNING,
            "reboot",
            "=on",
            "st:SHUTTING_DOWN",
            "=stopping",
            "hb:DEAD",
            "=stopping",
            f"+{STOP_GRACE + 1}",
            "=stopping",
            "?",
            "hb:ALIVE",
            "=starting",
            "st:STARTING",
            "st:ONLINE",
            f"+{REBOOT_GRACE}",
        ),
        "on",
        sent=("REBOOT",),
    ),
    Row(
        "reboot without a power sense: the agent's DEAD is not off, and nothing is pressed",
        (*RUNNING_NO_SENSE, "reboot", "st:SHUTTING_DOWN", "hb:DEAD", "=stopping", "?", "on", "hb:ALIVE"),
        "starting",
        timers=(Timer.START,),
        sent=("REBOOT", "refused:server_stopping"),
    ),
    Row(
        "reboot with the power sense OFF for a moment",
        (
            *RUNNING,
            "reboot",
            "st:SHUTTING_DOWN",
            "hb:DEAD",
            "pw:OFF",
            "=off",
            "pw:ON",
            "=starting",
            "hb:ALIVE",
        ),
        "starting",
        timers=(Timer.START,),
        sent=("REBOOT",),
    ),
    Row(
        "reboot needs the agent",
        (*RUNNING, "hb:DEAD", "reboot", *STOPPED, "reboot"),
        "off",
        sent=("refused:reboot_agent_not_connected", "refused:reboot_agent_not_connected"),
    ),
    Row(
        "reboot while stopping sends nothing",
        (*RUNNING, "st:SHUTTING_DOWN", "reboot"),
        "stopping",
        timers=(Timer.STOP,),
    ),
    Row(
        "reboot never begun",
        (*RUNNING, "reboot", f"+{REBOOT_GRACE - 1}", "?", "+2"),
        "on",
        issues=("reboot_no_response",),
        sent=("REBOOT",),
    ),
    Row(
        "reboot supersedes a pending shutdown",
        (*RUNNING, "off", "reboot", f"+{STOP_GRACE + 1}", "?", "st:SHUTTING_DOWN", "hb:DEAD", "hb:ALIVE"),
        "starting",
        timers=(Timer.START,),
        sent=("SHUTDOWN", "REBOOT"),
    ),
    Row(
        "reboot down and not back, no power sense: off; its return solves it",
        (
            *RUNNING_NO_SENSE,
            "reboot",
            "st:SHUTTING_DOWN",
            "hb:DEAD",
            f"+{REBOOT_GRACE + 1}",
            "=off",
            "?reboot_no_return",
            "hb:ALIVE",
            "st:ONLINE",
        ),
        "on",
        sent=("REBOOT",),
    ),
    Row(
        "reboot down and not back, powered: the power sense wins",
        (*RUNNING, "reboot", "st:SHUTTING_DOWN", "hb:DEAD", f"+{REBOOT_GRACE + 1}"),
        "on",
        issues=("reboot_no_return",),
        sent=("REBOOT",),
    ),
    Row(
        "reboot refused by logind: back ONLINE",
        (*RUNNING, "reboot", "st:SHUTTING_DOWN", "=stopping", "st:ONLINE", f"+{REBOOT_GRACE + 1}"),
        "on",
        issues=("stop_interrupted",),
        sent=("REBOOT",),
    ),
    # The power sense against the agent
    Row(
        "a retained ALIVE after the power went is history; a live one is not",
        (*RUNNING, "pw:OFF", "=off", "hb:ALIVE/r", "=off", "?", "hb:ALIVE"),
        "on",
        issues=("power_sense_mismatch",),
        timers=(Timer.STALE,),
    ),
    Row(
        "the power sense OFF does not override a live agent",
        (*LIVE_RUNNING, "pw:OFF", "=on", "on", "hb:ALIVE", "?power_sense_mismatch", "pw:ON", "on"),
        "on",
        issues=("power_sense_mismatch",),
        sent=("refused:power_sense_contradicts",),
    ),
    Row(
        "the Will confirms the power sense OFF",
        (*LIVE_RUNNING, "pw:OFF", "=on", "hb:DEAD", "=off", "?", "on"),
        "off",
        timers=(Timer.START,),
        sent=("PRESS",),
    ),
    Row(
        "the power sense OFF wins once the heartbeat is stale",
        (*LIVE_RUNNING, "pw:OFF", "+80", "hb:ALIVE", "+80", "=on", "+161", "=off", "hb:ALIVE"),
        "on",
        issues=("power_sense_mismatch",),
        timers=(Timer.STALE,),
    ),
    Row(
        "the power sense OFF after a force off is believed",
        (*LIVE_RUNNING, "force", "pw:OFF"),
        "off",
        sent=("HOLD",),
    ),
    Row(
        "the power sense OFF during a shutdown is believed",
        (*LIVE_RUNNING, "st:SHUTTING_DOWN", "pw:OFF"),
        "off",
    ),
    Row(
        "a stale live ALIVE does not outweigh the power sense",
        (*LIVE_RUNNING, "+91", "pw:OFF"),
        "off",
    ),
    # The server's TCP port
    Row("the port answers: on", ("tcp:up",), "on"),
    Row("no answer proves nothing", ("tcp:down",), None),
    Row(
        "the port gone while the agent is alive: still on",
        (*LIVE_RUNNING, "tcp:up", "tcp:down", "=on", "+200"),
        "on",
    ),
    Row(
        "a crashed agent while the port answers: on, no agent_lost",
        (*RUNNING_NO_SENSE, "tcp:up", "hb:DEAD"),
        "on",
    ),
    Row(
        "a shutdown: an answer before the port is gone does not count",
        (
            *RUNNING_NO_SENSE,
            "tcp:up",
            "off",
            "st:SHUTTING_DOWN",
            "hb:DEAD",
            "=off",
            "tcp:up",
            "=off",
            "tcp:down",
            "tcp:up",
        ),
        "on",
        sent=("SHUTDOWN",),
    ),
    Row("the power going ends an earlier answer", (*RUNNING, "tcp:up", "hb:DEAD", "=on", "pw:OFF"), "off"),
    Row(
        "a start: the port answers before the agent, never optimistic",
        (*STOPPED_NO_SENSE, "on", "=off", "tcp:up", "=on", "hb:ALIVE", "=starting", "st:ONLINE", "+300"),
        "on",
        sent=("PRESS",),
    ),
    Row(
        "a reboot: the port back before the agent ends it without issues",
        (
            *RUNNING,
            "tcp:up",
            "reboot",
            "st:SHUTTING_DOWN",
            "hb:DEAD",
            "tcp:down",
            "=stopping",
            "tcp:up",
            "=on",
            "+300",
        ),
        "on",
        sent=("REBOOT",),
    ),
    # The agent lost
    Row(
        "agent lost without a power sense; its return solves it",
        (*RUNNING_NO_SENSE, "hb:DEAD", "=off", "?agent_lost", "hb:ALIVE", "=starting", "st:ONLINE"),
        "on",
    ),
    Row(
        "the agent dead after a force off is no loss",
        (*RUNNING_NO_SENSE, "force", "hb:DEAD"),
        "off",
        sent=("HOLD",),
    ),
    Row(
        "the agent dead with the power sense ON: still on",
        (*RUNNING, "hb:DEAD"),
        "on",
    ),
)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row(row: Row) -> None:
    world = World().play(*row.steps)
    state = world.machine.state
    assert (state.value if state else None) == row.state
    assert set(world.issues) == {Issue(name) for name in row.issues}
    assert set(world.timers) == set(row.timers)
    assert world.sent == list(row.sent)


def test_issue_placeholders_and_fix() -> None:
    """Issues carry their grace and the state; only stop_still_powered has a fix."""
    world = World().play(*STOPPED, "on", f"+{START_GRACE + 1}")
    assert world.issues[Issue.START_NO_RESPONSE] == RaiseIssue(
        Issue.START_NO_RESPONSE, {"grace": "120", "state": "off"}, fixable=False
    )
    world = World().play(*RUNNING, "off", "st:SHUTTING_DOWN", "hb:DEAD", f"+{STOP_GRACE + 1}")
    assert world.issues[Issue.STOP_STILL_POWERED] == RaiseIssue(
        Issue.STOP_STILL_POWERED, {"grace": "60", "state": "on"}, fixable=True
    )
    world = World().play(*RUNNING, "off", "st:SHUTTING_DOWN", "st:ONLINE")
    assert world.issues[Issue.STOP_INTERRUPTED].placeholders == {"grace": "60", "state": "on"}
    # a reboot's grace is both ways
    world = World().play(*RUNNING, "reboot", f"+{REBOOT_GRACE + 1}")
    assert world.issues[Issue.REBOOT_NO_RESPONSE].placeholders == {"grace": "180", "state": "on"}
    # a boot HA took for a shutdown: the start issue, with the stop grace that ran out
    world = World().play("st:SHUTTING_DOWN/r", "hb:DEAD/r", "pw:ON", f"+{STOP_GRACE + 1}")
    assert world.issues[Issue.START_AGENT_SILENT] == RaiseIssue(
        Issue.START_AGENT_SILENT, {"grace": "60", "state": "on"}, fixable=False
    )


def test_a_command_clears_earlier_issues_but_the_mismatch() -> None:
    world = World().play(*RUNNING, "pw:OFF", "hb:ALIVE", "?power_sense_mismatch", "hb:DEAD", "pw:ON")
    world.issues[Issue.STOP_TIMEOUT] = RaiseIssue(Issue.STOP_TIMEOUT, {})
    effects = world.machine.begin(Action.TURN_OFF, world.now)
    assert effects == [
        *(ClearIssue(issue) for issue in Issue if issue is not Issue.POWER_SENSE_MISMATCH),
        ArmTimer(Timer.STOP, STOP_GRACE),
    ]
    assert world.machine.command is Command.STOP


def test_decisions_name_their_target() -> None:
    machine = World().play(*RUNNING).machine
    assert machine.decide(Action.TURN_OFF) == Send(protocol.SHUTDOWN, to_agent=True)
    assert machine.decide(Action.FORCE_OFF) == Send(protocol.HOLD, to_agent=False)
    assert machine.decide(Action.REBOOT) == Send(protocol.REBOOT, to_agent=True)
    machine = World().play(*STOPPED).machine
    assert machine.decide(Action.TURN_ON) == Send(protocol.PRESS, to_agent=False)
    machine = World().play(*LIVE_RUNNING, "pw:OFF").machine
    assert machine.decide(Action.TURN_ON) == Refuse(Refusal.POWER_SENSE_CONTRADICTS, {"relay_node": "relay1"})


@pytest.mark.parametrize(
    ("method", "decision"),
    [
        (PowerOn.RELAY, Send(protocol.PRESS, to_agent=False)),
        (PowerOn.WOL_NODE, Send(protocol.WOL, to_agent=False)),
        (PowerOn.WOL_HA, Send(protocol.WOL, to_agent=False, from_ha=True)),
        (PowerOn.NONE, Refuse(Refusal.NO_POWER_ON)),
    ],
)
def test_power_on_methods(method: PowerOn, decision: Send | Refuse) -> None:
    """Each method turns an off server on its way; none is optimistic, none presses a running one."""
    world = World(PowerMachine(PowerConfig("nas", "relay1", START_GRACE, STOP_GRACE, power_on=method)))
    machine = world.play(*STOPPED).machine
    assert machine.decide(Action.TURN_ON) == decision
    world.act(Action.TURN_ON)
    assert machine.state is PowerState.OFF
    assert machine.decide(Action.FORCE_OFF) == Send(protocol.HOLD, to_agent=False)
    world.play("pw:ON", "hb:ALIVE", "st:ONLINE", "=on")
    assert machine.decide(Action.TURN_ON) is None
    # a node offline stops what the node sends, not what HA sends itself
    world.play("hb:DEAD", "pw:OFF", "=off", "node:OFFLINE")
    offline = Refuse(Refusal.RELAY_NODE_OFFLINE, {"relay_node": "relay1"})
    assert machine.decide(Action.TURN_ON) == (
        offline if decision in (Send(protocol.PRESS, False), Send(protocol.WOL, False)) else decision
    )


def test_every_evidence_notifies_once_and_a_command_not_at_all() -> None:
    world = World().play(*STOPPED, "node:OFFLINE", "node:ONLINE")
    assert world.notified == 5
    world.play("on")
    assert world.notified == 5
    # a grace that only raises an issue changes nothing the entities show
    world.play(f"+{START_GRACE + 1}", "?start_no_response")
    assert world.notified == 5
    # one that lets the power sense win does
    world.play("on", "pw:ON", f"+{START_GRACE + 1}", "=on")
    assert world.notified == 7


def test_stale_timer_follows_the_heartbeat() -> None:
    world = World().play(*LIVE_RUNNING, "+10")
    effects = world.apply(world.machine.on_power(protocol.POWER_OFF, world.now))
    # still on with the agent reporting: the start issues stay solved
    assert effects[-2:] == [ArmTimer(Timer.STALE, 80.0), Notify()]
    assert all(isinstance(effect, ClearIssue) for effect in effects[:-2])
    assert world.machine.evidence.contradicted
    assert world.machine.evidence.beat_age(world.now) == 10.0
    # the next live ALIVE, 60 s after the last, rearms it: three times the largest gap
    world.play("+50", "hb:ALIVE")
    assert world.timers == {Timer.STALE: world.now + 180.0}


def test_stop_cancels_the_timers_and_the_command() -> None:
    world = World().play(*LIVE_RUNNING, "pw:OFF", "off")
    assert set(world.timers) == {Timer.STALE, Timer.STOP}
    world.apply(world.machine.stop())
    assert world.timers == {}
    assert world.machine.command is None
    assert world.machine.stop() == []


def test_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    World().play(*LIVE_RUNNING, "pw:OFF", "+91")
    assert "Server nas: node relay1's power sense reads OFF, but the agent said ALIVE 0 s ago" in caplog.text
    assert (
        "Server nas: no heartbeat from the agent for 90 s; following node relay1's power sense" in caplog.text
    )
    assert "Server nas: on -> off" in caplog.text
    caplog.clear()
    World().play("pw:OFF")
    assert "Server nas: unknown -> off" in caplog.text
    assert "None" not in caplog.text
    caplog.clear()
    World().play(*LIVE_RUNNING, "pw:OFF", "hb:DEAD")
    assert "the agent died (its Will): node relay1's power sense (OFF) was right" in caplog.text
    caplog.clear()
    World().play(*RUNNING_NO_SENSE, "hb:DEAD", "hb:ALIVE")
    assert "without a power sense the server is shown off" in caplog.text
    assert "Server nas: the agent is connected again" in caplog.text
