"""Power off and reboot through systemd-logind on the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured).

Needs no root: the polkit rule shipped in packaging/ lets the agent's user do both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

DESTINATION = "org.freedesktop.login1"
PATH = "/org/freedesktop/login1"
INTERFACE = "org.freedesktop.login1.Manager"
TIMEOUT = 25.0


@dataclass(frozen=True, slots=True)
class Action:
    """What logind is asked: `check` first ("yes" needed), then `method`."""

    check: str
    method: str
    name: str  # for log lines


POWER_OFF = Action("CanPowerOff", "PowerOff", "power off")
REBOOT = Action("CanReboot", "Reboot", "reboot")


class LogindError(Exception):
    """logind refused, failed, or could not be reached."""


async def _call(
    bus: MessageBus, member: str, signature: str = "", body: list[Any] | None = None
) -> list[Any]:
    reply = await bus.call(
        Message(
            destination=DESTINATION,
            path=PATH,
            interface=INTERFACE,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    if reply is None:
        raise LogindError(f"{member}: no reply")
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise LogindError(f"{member} failed: {reply.error_name}: {detail}")
    return list(reply.body)


async def _connect() -> MessageBus:
    try:
        return await MessageBus(bus_type=BusType.SYSTEM).connect()
    except Exception as err:  # dbus-fast raises several types for an absent bus
        raise LogindError(f"cannot connect to the system bus: {err}") from err


async def can(*actions: Action) -> dict[str, str]:
    """Return logind's answer to each `action.check`, by method; carry nothing out.

    Answers: "yes", "no", "challenge" (polkit would ask), "na".
    """
    bus = await _connect()
    answers: dict[str, str] = {}
    try:
        for action in actions:
            (answer,) = await asyncio.wait_for(_call(bus, action.check), TIMEOUT)
            answers[action.check] = str(answer)
    except TimeoutError as err:
        raise LogindError(f"{action.check}: no answer from logind") from err
    finally:
        bus.disconnect()
    return answers


async def perform(action: Action) -> None:
    """Ask `action.check`, then call `action.method`(interactive=false); raise LogindError if refused."""
    bus = await _connect()
    try:
        (answer,) = await asyncio.wait_for(_call(bus, action.check), TIMEOUT)
        if answer != "yes":
            hint = " (is the polkit rule installed?)" if answer == "challenge" else ""
            raise LogindError(f"logind {action.check} answered {answer!r}{hint}")
        await asyncio.wait_for(_call(bus, action.method, "b", [False]), TIMEOUT)
    except TimeoutError as err:
        raise LogindError("no answer from logind") from err
    finally:
        bus.disconnect()
