"""The simulated homelab of `script/develop --demo`: a relay node and two servers.

The relay node is the real firmware on MicroPython's unix port (script/harness/board.py);
each server is the real agent with a fake logind on a private system bus. What the
hardware would do in between is played here: a PRESS of the relay powers the first server
up (its power LED input goes on, then the agent starts), a HOLD cuts its power; the
second server has no node: Home Assistant's Wake-on-LAN packet, received on 127.0.0.1,
starts it. logind's PowerOff powers either down (the agent stops, the LED goes dark).
"""

from __future__ import annotations

import json
import shutil
import socket
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
# the server that Home Assistant wakes itself, without a node
WOL_SERVER = "demo-wol"
WOL_SERVER_NAME = "WOL server"
WOL_MAC = "02:00:5E:00:53:01"  # a locally administered address: no real card has it
# served by Home Assistant from <config>/smartserver/clients/demo-relay/config/
NODE_CONFIG = {"alarms": {"ups": {"pin": UPS_PIN, "active": 0, "pull": "up", "message": "UPS on battery"}}}


@dataclass
class Machine:
    """A simulated server: its agent on a fake logind; it boots and halts as told."""

    root: Path
    broker: Broker
    server_id: str
    command_key: str
    report: Callable[[str], None] = print
    bus: SystemBus = field(init=False)
    agent: AgentProcess = field(init=False)
    powered: bool = False
    _power_offs: int = 0
    _due: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # a socket path must stay short: the bus lives in /tmp
        self.bus = SystemBus(Path(tempfile.mkdtemp(prefix="smartserver-demo-bus-")))
        self.agent = AgentProcess(
            agent_env(self.root, self.broker, None, server_id=self.server_id, key=self.command_key),
            self.root,
        )

    def start(self) -> None:
        """The machine is off."""
        self.bus.start()
        self.agent.env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus.address

    def power_up(self, why: str) -> None:
        """Power on: the agent starts once the system booted."""
        self.report(f"demo: {why}: {self.server_id} boots")
        self.powered = True
        self._later(BOOT_S, self._agent_starts)

    def step(self) -> None:
        """Halt when logind was asked to power off; run what is due."""
        power_offs = len(self.bus.calls("PowerOff"))
        if power_offs > self._power_offs and self.powered:
            self.report(f"demo: logind was asked to power off: {self.server_id} halts")
            self._later(HALT_S, self.power_down)
        self._power_offs = power_offs
        now = time.monotonic()
        for entry in [e for e in self._due if e[0] <= now]:
            self._due.remove(entry)
            entry[1]()

    def _agent_starts(self) -> None:
        self.report(f"demo: {self.server_id} is up: its agent starts")
        self.agent.start()

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._due.append((time.monotonic() + delay, action))

    def power_down(self, hard: bool = False) -> None:
        """The power goes: the agent stops (killed, without a clean exit, when `hard`)."""
        self._due.clear()
        running = self.agent.proc is not None and self.agent.proc.poll() is None
        if running and hard:
            self.agent.kill()  # no clean exit: the broker publishes the agent's Will
        elif running:
            self.agent.terminate()  # systemd stops the agent on the way down
        if self.powered:
            self.report(f"demo: {self.server_id} is off")
        self.powered = False

    def stop(self) -> None:
        """Stop the agent and the bus."""
        self.agent.stop()
        self.bus.stop()
        shutil.rmtree(self.bus.directory, ignore_errors=True)


def magic_packet(mac: str) -> bytes:
    """What Wake-on-LAN sends: 6 x 0xFF, then the MAC 16 times."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


@dataclass
class WolServer:
    """A server without a node: a magic packet for its MAC on 127.0.0.1:`port` starts it."""

    machine: Machine
    port: int
    mac: str = WOL_MAC
    _sock: socket.socket | None = None

    def start(self) -> None:
        """The server runs (its agent must report once: a state nobody reported is not off)."""
        self.machine.start()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", self.port))  # its network card: on loopback only
        self._sock.setblocking(False)
        self.machine.power_up("it runs when the demo starts")

    def step(self) -> None:
        """Take the packets that arrived; a good one powers the server up."""
        assert self._sock is not None
        while True:
            try:
                packet = self._sock.recv(1024)
            except BlockingIOError:
                break
            if packet != magic_packet(self.mac):
                self.machine.report(
                    f"demo: a UDP packet that is not the magic packet for {self.mac}: ignored"
                )
            elif self.machine.powered:
                # as a real network card: a running (or halting) machine ignores it
                self.machine.report(
                    f"demo: a Wake-on-LAN packet for {self.mac} arrived while it is on: ignored"
                )
            else:
                self.machine.power_up(f"a Wake-on-LAN packet for {self.mac} arrived")
        self.machine.step()

    def stop(self) -> None:
        """Stop the agent; close the socket."""
        if self._sock is not None:
            self._sock.close()
        self.machine.stop()


@dataclass
class DemoServer:
    """The relay node, the servers' agents, and the wires between them."""

    root: Path
    broker: Broker
    node_key: str
    command_key: str
    report: Callable[[str], None] = print
    # the WOL server's command key and its port on 127.0.0.1 (None: no WOL server)
    wol: tuple[str, int] | None = None
    board: Board = field(init=False)
    machine: Machine = field(init=False)
    wol_server: WolServer | None = field(init=False, default=None)
    ntp: NtpServer | None = None
    _pulses: int = 0

    def __post_init__(self) -> None:
        # every run starts from powered-off servers and a freshly flashed node
        shutil.rmtree(self.root, ignore_errors=True)
        self.board = Board(
            micropython_port(),
            self.root / "board",
            board_config(self.broker, node_id=NODE, log={"level": "info"}),
            {**secrets_config(self.broker), "key": self.node_key},
            self.broker.certs.ca_pem,
        )
        self.machine = Machine(self.root / "agent", self.broker, SERVER, self.command_key, self.report)
        if self.wol is not None:
            key, port = self.wol
            machine = Machine(self.root / "wol-agent", self.broker, WOL_SERVER, key, self.report)
            self.wol_server = WolServer(machine, port)

    @property
    def agent(self) -> AgentProcess:
        """The relay-switched server's agent."""
        return self.machine.agent

    @property
    def ups_input(self) -> Path:
        """The file that drives the UPS alarm input: write 0 for "on battery"."""
        return self.board.inputs / f"pin{UPS_PIN}"

    def start(self) -> None:
        """The servers are off and the mains are up; the relay node boots."""
        self.ntp = NtpServer().start()
        self.machine.start()
        if self.wol_server is not None:
            self.wol_server.start()
        self.board.set_input(SENSE_PIN, LED_OFF)
        self.board.set_input(UPS_PIN, ON_MAINS)
        self.board.boot()
        # ready once the node takes commands: on the unix port it boots, connects and sets
        # its clock within one second, and a command signed in its boot second is refused
        self.board.wait_commands()

    def step(self) -> None:
        """Play the hardware: call this a few times a second."""
        self.board.poll()
        machine = self.machine
        was_powered = machine.powered
        pulses = self.board.pulses(RELAY_PIN)
        for pulse in pulses[self._pulses :]:
            if pulse.ms >= HOLD_MS:
                self.report(f"demo: the relay held the button {pulse.ms:.0f} ms: power cut")
                machine.power_down(hard=True)
            elif not machine.powered:
                machine.power_up("the relay pressed the power button")
                self.board.set_input(SENSE_PIN, LED_ON)
        self._pulses = len(pulses)
        machine.step()
        if was_powered and not machine.powered:
            self.board.set_input(SENSE_PIN, LED_OFF)  # halted (or cut): the power LED goes dark
        if self.wol_server is not None:
            self.wol_server.step()

    def stop(self) -> None:
        """Stop every process this started."""
        self.machine.stop()
        if self.wol_server is not None:
            self.wol_server.stop()
        self.board.stop()
        if self.ntp:
            self.ntp.stop()


def write_node_config(config_dir: Path) -> None:
    """The relay node's configuration, where the integration serves it from."""
    folder = config_dir / "smartserver" / "clients" / NODE / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in NODE_CONFIG.items():
        (folder / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
