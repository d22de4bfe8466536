"""A fake org.freedesktop.login1 on a private bus: records calls, powers nothing off or reboots.

Run by the system_bus fixture as its own process. Each call is appended as a JSON
line to --record; --control holds JSON that decides the answers, reread per call:
  {"can_power_off": "yes" | "no" | "challenge" | ..., "power_off_error": "<text>",
   "can_reboot": (the same answers), "reboot_error": "<text>"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method

# dbus-fast reads D-Bus signatures from the (unevaluated) annotations; these aliases
# give mypy the matching Python types.
s = str
b = bool


class Manager(ServiceInterface):
    """The subset of org.freedesktop.login1.Manager an agent uses."""

    def __init__(self, record: Path, control: Path) -> None:
        super().__init__("org.freedesktop.login1.Manager")
        self._record = record
        self._control = control

    def _log(self, method: str, *args: Any) -> dict[str, Any]:
        with self._record.open("a") as out:
            out.write(json.dumps({"method": method, "args": list(args), "time": time.time()}) + "\n")
        try:
            control: dict[str, Any] = json.loads(self._control.read_text())
        except (OSError, ValueError):
            control = {}
        return control

    @dbus_method()
    def CanPowerOff(self) -> "s":  # noqa: UP037
        return str(self._log("CanPowerOff").get("can_power_off", "yes"))

    def _act(self, method: str, interactive: bool, error_key: str) -> None:
        error = self._log(method, interactive).get(error_key)
        if error:
            raise DBusError("org.freedesktop.DBus.Error.AccessDenied", str(error))

    @dbus_method()
    def PowerOff(self, interactive: "b"):  # type: ignore[no-untyped-def]  # noqa: UP037
        self._act("PowerOff", interactive, "power_off_error")

    @dbus_method()
    def CanReboot(self) -> "s":  # noqa: UP037
        return str(self._log("CanReboot").get("can_reboot", "yes"))

    @dbus_method()
    def Reboot(self, interactive: "b"):  # type: ignore[no-untyped-def]  # noqa: UP037
        self._act("Reboot", interactive, "reboot_error")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args()
    bus = await MessageBus(bus_address=args.address, bus_type=BusType.SYSTEM).connect()
    bus.export("/org/freedesktop/login1", Manager(args.record, args.control))
    await bus.request_name("org.freedesktop.login1")
    print("ready", flush=True)
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    asyncio.run(main())
