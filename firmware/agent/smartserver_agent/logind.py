"""Power off through systemd-logind on the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured).

Needs no root: the polkit rule shipped in packaging/ lets the agent's user power off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

DESTINATION = "org.freedesktop.login1"
PATH = "/org/freedesktop/login1"
INTERFACE = "org.freedesktop.login1.Manager"
TIMEOUT = 25.0


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


async def can_power_off() -> str:
    """Return logind's answer: "yes", "no", "challenge" (polkit would ask), "na"."""
    bus = await _connect()
    try:
        (answer,) = await asyncio.wait_for(_call(bus, "CanPowerOff"), TIMEOUT)
        return str(answer)
    except TimeoutError as err:
        raise LogindError("CanPowerOff: no answer from logind") from err
    finally:
        bus.disconnect()


async def power_off() -> None:
    """Ask CanPowerOff, then PowerOff(interactive=false); raise LogindError if refused."""
    bus = await _connect()
    try:
        (answer,) = await asyncio.wait_for(_call(bus, "CanPowerOff"), TIMEOUT)
        if answer != "yes":
            hint = " (is the polkit rule installed?)" if answer == "challenge" else ""
            raise LogindError(f"logind CanPowerOff answered {answer!r}{hint}")
        await asyncio.wait_for(_call(bus, "PowerOff", "b", [False]), TIMEOUT)
    except TimeoutError as err:
        raise LogindError("no answer from logind") from err
    finally:
        bus.disconnect()
