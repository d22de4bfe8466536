"""`script/develop --demo` as a new user runs it: a working system to click through.

The runner starts the broker, Home Assistant, the simulated relay node and server;
the test works the demo server's switch over HA's REST API, lets the UPS alarm fire,
stops everything with Ctrl-C and checks that nothing it started is left. A second
start in the same folder reuses everything the first one set up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from script.harness.hass_process import REPO, HassApi, HassProcess, Owner, integration_problems
from script.harness.procs import free_port, stop, wait_for

from .conftest import keep_logs

SWITCH = "switch.demo_server_power"
WOL_SWITCH = "switch.wol_server_power"


IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Develop:
    """`script/dev_instance.py --demo` (what script/develop runs after bootstrap)."""

    def __init__(self, dev: Path) -> None:
        self.dev = dev
        self.output = ""
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            # started as a script's background job starts it (CI may run so): with SIGINT
            # ignored, which exec keeps
            [sys.executable, "-c", IGNORING_SIGINT, str(REPO / "script" / "dev_instance.py"), "--demo"],
            env={**os.environ, "PYTHONPATH": str(REPO), "SMARTSERVER_DEV_DIR": str(dev)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.output += line

    def wait_output(self, text: str, timeout: float) -> None:
        """Wait until the runner printed `text`; fail at once if it exited."""

        def printed() -> bool:
            if self.proc.poll() is not None and text not in self.output:
                raise AssertionError(f"script/develop exited with {self.proc.returncode}:\n{self.output}")
            return text in self.output

        wait_for(printed, timeout, f"{text!r} from script/develop")

    def descendants(self) -> set[int]:
        """Every process the runner started, directly or not."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found: set[int] = set()
        frontier = {self.proc.pid}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= frontier
        return found

    def ctrl_c(self) -> None:
        """Stop it as a user does; it must exit cleanly and leave nothing behind."""
        started = self.descendants()
        assert started, "the runner started no processes"
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            log = self.dev / "config" / "home-assistant.log"
            tail = log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"
            shown = f"{self.output[-4000:]}\nHA's log:\n{tail}"
            raise AssertionError(f"not stopped within 60 s:\n{shown}") from None
        assert code == 0, self.output
        wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in started), 10, "its processes to end"
        )


async def test_develop_demo(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    # free ports instead of the defaults, which a developer's own instance may hold
    ports = {"hass_port": free_port(), "mqtt_port": free_port(), "mqtts_port": free_port()}
    (dev / "dev.json").write_text(json.dumps(ports))
    run = Develop(dev)
    ok = False
    try:
        run.wait_output("SmartServer development instance ready", 300)
        run.wait_output("Let the UPS run on battery", 30)
        state = json.loads((dev / "dev.json").read_text())
        assert f"log in as     dev / {state['owner_password']}" in run.output
        hass = HassProcess(dev / "config", port=state["hass_port"])
        assert hass.url in run.output
        async with HassApi(hass) as api:
            await api.login(Owner("dev", state["owner_password"]))
            # the simulated node reports the server's power LED: off
            await api.wait_state(SWITCH, "off", within=90)
            # a first run as a user meets it: no repair caused by the dev tooling itself
            # (an http: YAML block once raised "The HTTP YAML configuration is deprecated")
            shown = (await api.ws("repairs/list_issues"))["issues"]
            assert [(i["domain"], i["issue_id"]) for i in shown if not i.get("ignored")] == []
            # history and logbook are there to see what the server did
            for path in ("/api/logbook", f"/api/history/period?filter_entity_id={SWITCH}"):
                assert await api.request("GET", path) is not None
            assert "Settings > Devices &" in run.output
            # nothing scary that the dev tooling causes itself (dbus-daemon's fd limit line)
            assert "AccessDenied" not in run.output
            await api.request("POST", "/api/services/switch/turn_on", json_body={"entity_id": SWITCH})
            await api.wait_state(SWITCH, "on", within=60)
            await api.wait_state("sensor.demo_server_power_state", "on", within=60)
            assert "the relay pressed the power button" in run.output

            ups = dev / "demo" / "board" / "inputs" / "pin32"
            assert f"echo 0 > {ups}" in run.output
            ups.write_text("0")
            await api.wait_state("sensor.demo_relay_last_log", "UPS on battery", within=30)

            await api.request("POST", "/api/services/switch/turn_off", json_body={"entity_id": SWITCH})
            await api.wait_state(SWITCH, "off", within=60)
            await api.wait_state("sensor.demo_server_power_state", "off", within=60)
            assert "logind was asked to power off" in run.output

            # the server without a node runs; off through its agent, on by Home Assistant's
            # Wake-on-LAN packet, which the simulated server receives on 127.0.0.1
            await api.wait_state(WOL_SWITCH, "on", within=60)
            registered = {e["entity_id"] for e in await api.ws("config/entity_registry/list")}
            assert "button.demo_server_force_off" in registered
            assert "button.wol_server_force_off" not in registered  # no node to hold its button
            await api.request("POST", "/api/services/switch/turn_off", json_body={"entity_id": WOL_SWITCH})
            await api.wait_state(WOL_SWITCH, "off", within=60)
            # the agent reports its shutdown before logind powers the machine off
            run.wait_output("demo: demo-wol is off", 30)
            await api.request("POST", "/api/services/switch/turn_on", json_body={"entity_id": WOL_SWITCH})
            await api.wait_state("sensor.wol_server_power_state", "on", within=60)
            assert "a Wake-on-LAN packet for 02:00:5E:00:53:01 arrived: demo-wol boots" in run.output
        run.ctrl_c()

        # the next day: the same folder, nothing set up twice
        run = Develop(dev)
        run.wait_output("SmartServer development instance ready", 300)
        assert "logged in" in run.output
        assert "added through its config flow" not in run.output
        async with HassApi(hass) as api:
            await api.login(Owner("dev", state["owner_password"]))
            entry = await api.wait_loaded("smartserver")
            assert [s["title"] for s in await api.subentries(entry["entry_id"])] == [
                "Demo server",
                "WOL server",
            ]
            await api.wait_state(SWITCH, "off", within=90)
        run.ctrl_c()
        assert integration_problems(hass.log) == []
        ok = True
    finally:
        stop(run.proc, timeout=60)
        if not ok:
            (tmp_path / "develop.out").write_text(run.output)
            keep_logs(
                REPO / "artifacts" / "e2e" / "test_develop",
                tmp_path / "develop.out",
                dev / "config" / "home-assistant.log",
                dev / "demo" / "board" / "console.txt",
                dev / "demo" / "agent" / "agent.log",
            )
