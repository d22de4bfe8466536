"""The simulated homelab of `script/develop --demo`: one relay node and one server.

The relay node is the real firmware on MicroPython's unix port (script/harness/board.py);
the server is the real agent with a fake logind on a private system bus. What the
hardware would do in between is played here: a PRESS of the relay powers the server up
(its power LED input goes on, then the agent starts), logind's PowerOff powers it down
(the agent stops, the LED goes dark), a HOLD cuts the power.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from script.harness.agent import AgentProcess, agent_env
from script.harness.board import Board, board_config, secrets_config
from script.harness.micropython import micropython_port
from script.harness.mosquitto import Broker
from script.harness.ntp import NtpServer
from script.harness.system_bus import SystemBus

NODE = "demo-relay"
SERVER = "demo"
SERVER_NAME = "Demo server"
RELAY_PIN, SENSE_PIN, UPS_PIN = 25, 34, 32  # the UPS contact uses the pin's own pull-up
LED_ON, LED_OFF = 0, 1  # the power LED's optocoupler pulls the input low
ON_BATTERY, ON_MAINS = 0, 1  # the UPS's contact closes to ground
HOLD_MS = 2000  # a pulse this long is a HOLD: the power is cut
BOOT_S = 4.0  # power LED on to agent connected
HALT_S = 2.0  # PowerOff to power LED off
# served by Home Assistant from <config>/smartserver/clients/demo-relay/config/
NODE_CONFIG = {"alarms": {"ups": {"pin": UPS_PIN, "active": 0, "pull": "up", "message": "UPS on battery"}}}


@dataclass
class DemoServer:
    """The relay node, the server's agent, and the wires between them."""

    root: Path
    broker: Broker
    node_key: str
    command_key: str
    report: Callable[[str], None] = print
    board: Board = field(init=False)
    bus: SystemBus = field(init=False)
    agent: AgentProcess = field(init=False)
    ntp: NtpServer | None = None
    powered: bool = False
    _pulses: int = 0
    _power_offs: int = 0
    _due: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # every run starts from a powered-off server and a freshly flashed node
        shutil.rmtree(self.root, ignore_errors=True)
        # a socket path must stay short: the bus lives in /tmp
        self.bus = SystemBus(Path(tempfile.mkdtemp(prefix="smartserver-demo-bus-")))
        self.board = Board(
            micropython_port(),
            self.root / "board",
            board_config(self.broker, node_id=NODE, log={"level": "info"}),
            {**secrets_config(self.broker), "key": self.node_key},
            self.broker.certs.ca_pem,
        )
        self.agent = AgentProcess(
            agent_env(self.root / "agent", self.broker, None, server_id=SERVER, key=self.command_key),
            self.root / "agent",
        )

    @property
    def ups_input(self) -> Path:
        """The file that drives the UPS alarm input: write 0 for "on battery"."""
        return self.board.inputs / f"pin{UPS_PIN}"

    def start(self) -> None:
        """The server is off and the mains are up; the relay node boots."""
        self.ntp = NtpServer().start()
        self.bus.start()
        self.agent.env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus.address
        self.board.set_input(SENSE_PIN, LED_OFF)
        self.board.set_input(UPS_PIN, ON_MAINS)
        self.board.boot()
        # ready once the node takes commands: on the unix port it boots, connects and sets
        # its clock within one second, and a command signed in its boot second is refused
        self.board.wait_commands()

    def step(self) -> None:
        """Play the hardware: call this a few times a second."""
        self.board.poll()
        pulses = self.board.pulses(RELAY_PIN)
        for pulse in pulses[self._pulses :]:
            if pulse.ms >= HOLD_MS:
                self.report(f"demo: the relay held the button {pulse.ms:.0f} ms: power cut")
                self._power_down(hard=True)
            elif not self.powered:
                self.report("demo: the relay pressed the power button: the server boots")
                self.powered = True
                self.board.set_input(SENSE_PIN, LED_ON)
                self._later(BOOT_S, self._agent_starts)
        self._pulses = len(pulses)
        power_offs = len(self.bus.calls("PowerOff"))
        if power_offs > self._power_offs and self.powered:
            self.report("demo: logind was asked to power off: the server halts")
            self._later(HALT_S, self._power_down)
        self._power_offs = power_offs
        now = time.monotonic()
        for entry in [e for e in self._due if e[0] <= now]:
            self._due.remove(entry)
            entry[1]()

    def _agent_starts(self) -> None:
        self.report("demo: the server is up: its agent starts")
        self.agent.start()

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._due.append((time.monotonic() + delay, action))

    def _power_down(self, hard: bool = False) -> None:
        self._due.clear()
        running = self.agent.proc is not None and self.agent.proc.poll() is None
        if running and hard:
            self.agent.kill()  # no clean exit: the broker publishes the agent's Will
        elif running:
            self.agent.terminate()  # systemd stops the agent on the way down
        self.powered = False
        self.board.set_input(SENSE_PIN, LED_OFF)

    def stop(self) -> None:
        """Stop every process this started."""
        self.agent.stop()
        self.board.stop()
        if self.ntp:
            self.ntp.stop()
        self.bus.stop()
        shutil.rmtree(self.bus.directory, ignore_errors=True)


def write_node_config(config_dir: Path) -> None:
    """The relay node's configuration, where the integration serves it from."""
    folder = config_dir / "smartserver" / "clients" / NODE / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in NODE_CONFIG.items():
        (folder / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
