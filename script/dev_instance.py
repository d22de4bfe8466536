"""script/develop's runner: a local TLS broker and Home Assistant with SmartServer set up.

Everything lives in the git-ignored .dev/ folder (SMARTSERVER_DEV_DIR) and is reused by
the next run: certificates, the broker's password, ports, Home Assistant's config and its
owner. With --demo it also runs a simulated relay node and two servers (script/harness/demo.py), so
the dashboard has a power switch to try. Ctrl-C stops what this started, by PID. Run
through script/develop (it bootstraps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from script.harness.certs import certs_at, certs_valid, make_certs
from script.harness.demo import (
    NODE,
    SERVER,
    SERVER_NAME,
    WOL_MAC,
    WOL_SERVER,
    WOL_SERVER_NAME,
    DemoServer,
    write_node_config,
)
from script.harness.hass_process import REPO, HassApi, HassProcess, Owner, agent_settings, set_up
from script.harness.mosquitto import Broker
from script.harness.procs import free_port, port_open

DEV = Path(os.environ.get("SMARTSERVER_DEV_DIR") or REPO / ".dev")
STATE = DEV / "dev.json"
OWNER_USERNAME = "dev"


def _port(preferred: int) -> int:
    return preferred if not port_open(preferred) else free_port()


def save_state(state: dict[str, Any]) -> None:
    """Keep the state private: it holds passwords and keys."""
    DEV.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2) + "\n")
    STATE.chmod(0o600)


def load_state() -> dict[str, Any]:
    """Ports and passwords, chosen on the first run and kept for the next ones."""
    state: dict[str, Any] = json.loads(STATE.read_text()) if STATE.exists() else {}
    defaults: dict[str, Callable[[], object]] = {
        "hass_port": lambda: _port(8123),
        "mqtt_port": lambda: _port(1883),
        "mqtts_port": lambda: _port(8883),
        "mqtt_password": lambda: secrets.token_urlsafe(12),
        "owner_password": lambda: secrets.token_urlsafe(9),
    }
    for key, make in defaults.items():
        state.setdefault(key, make())
    save_state(state)
    return state


async def demo_keys(api: HassApi, state: dict[str, Any]) -> tuple[str, str, tuple[str, int]]:
    """The demo servers' keys (and the WOL server's port): added through the server flow once, then kept."""
    entry = await api.wait_loaded("smartserver")
    subentries = await api.subentries(entry["entry_id"])

    async def added(name: str, kept: str) -> bool:
        servers = [s for s in subentries if s["title"] == name]
        if servers and kept in state:
            return True
        for server in servers:  # its keys were lost with dev.json: add it again
            await api.ws(
                "config_entries/subentries/delete",
                entry_id=entry["entry_id"],
                subentry_id=server["subentry_id"],
            )
        return False

    if not await added(SERVER_NAME, "demo"):
        shown = await api.add_server(entry["entry_id"], SERVER_NAME, SERVER, NODE)
        state["demo"] = {
            "node_key": shown["node_key"],
            "command_key": agent_settings(shown)["SMARTSERVER_KEY"],
        }
        save_state(state)
    if not await added(WOL_SERVER_NAME, "demo_wol"):
        # woken by Home Assistant itself, to the simulated network card on loopback
        port = free_port()
        wol: dict[str, Any] = {
            "power_on": "wol_ha",
            "mac": WOL_MAC,
            "wol_address": "127.0.0.1",
            "wol_port": port,
        }
        shown = await api.add_server(entry["entry_id"], WOL_SERVER_NAME, WOL_SERVER, None, **wol)
        state["demo_wol"] = {"command_key": agent_settings(shown)["SMARTSERVER_KEY"], "port": port}
        save_state(state)
    wol_server = state["demo_wol"]
    return (
        state["demo"]["node_key"],
        state["demo"]["command_key"],
        (wol_server["command_key"], wol_server["port"]),
    )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def banner(hass: HassProcess, broker: Broker, owner: Owner, seconds: float) -> str:
    """What a new user needs to log in and to point nodes and agents at the broker."""
    return f"""
SmartServer development instance ready in {seconds:.0f} s

  Home Assistant  {hass.url}
    log in as     {owner.username} / {owner.password}
    log           {hass.config_dir / "home-assistant.log"}
    config        {hass.config_dir}  (custom_components/smartserver links to this checkout)
  MQTT broker     {broker.host}:{broker.tls_port} (TLS), {broker.host}:{broker.port} (plain)
    user          {broker.username} / {broker.password}
    CA            {broker.certs.ca}

Restart Home Assistant from its UI to load code changes. Ctrl-C stops everything.
"""


def demo_banner(demo: DemoServer) -> str:
    """How to try the simulated server."""
    return f"""Demo: "{SERVER_NAME}" is off. Its power switch is on its device: Settings > Devices &
  services > SmartServer > {SERVER_NAME} (or Overview > the Devices tile). It presses the
  button of relay node {NODE} (the firmware on MicroPython's unix port); the server boots
  and its agent connects. Switching it off shuts it down through (a fake) logind.
  History and Logbook (sidebar) show what the server and the node did.
  Let the UPS run on battery (a critical log line):  echo 0 > {demo.ups_input}
  and back on mains:                                 echo 1 > {demo.ups_input}
  "{WOL_SERVER_NAME}" runs, and has no node: switch it off, then on again, and Home Assistant
  wakes it with a Wake-on-LAN packet (sent to 127.0.0.1 here, where the simulated server
  listens). It has no force-off button: no node holds its power button.
"""


def main() -> int:
    """Start the broker and Home Assistant, set them up, wait for Ctrl-C."""
    parser = argparse.ArgumentParser(description="A local broker and Home Assistant with SmartServer.")
    parser.add_argument("--demo", action="store_true", help="also run a simulated relay node and server")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C stops everything even when started from a shell that ignores SIGINT (a
    # background job of a script): Python then installs no handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    state = load_state()
    pki = DEV / "pki"
    certs = certs_at(pki) if certs_valid(pki, 86400) else make_certs(pki, days=3650)
    broker = Broker(
        DEV / "mosquitto",
        certs,
        password=state["mqtt_password"],
        port=state["mqtt_port"],
        tls_port=state["mqtts_port"],
    )
    hass = HassProcess(DEV / "config", port=state["hass_port"], name="SmartServer dev")
    owner = Owner(OWNER_USERNAME, state["owner_password"])
    demo: DemoServer | None = None
    try:
        broker.start()
        hass.install_component("symlink")
        hass.write_configuration()
        hass.start()
        print(f"starting Home Assistant on {hass.url} (log: {hass.config_dir / 'home-assistant.log'}) ...")

        async def prepare() -> tuple[str, str, tuple[str, int]] | None:
            async with HassApi(hass) as api:
                await set_up(api, owner, broker, report=lambda step: print(step, flush=True))
                return await demo_keys(api, state) if args.demo else None

        keys = asyncio.run(prepare())
        if keys is not None:
            write_node_config(hass.config_dir)
            node_key, command_key, wol = keys
            demo = DemoServer(
                DEV / "demo",
                broker,
                node_key,
                command_key,
                report=lambda line: print(line, flush=True),
                wol=wol,
            )
            demo.start()
        print(banner(hass, broker, owner, time.monotonic() - started), flush=True)
        if demo is not None:
            print(demo_banner(demo), flush=True)
        while True:
            hass.check_alive()
            if not broker.running:
                print("mosquitto exited:\n" + broker.log[-2000:], file=sys.stderr)
                return 1
            for _ in range(5):
                if demo is not None:
                    demo.step()
                time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        if demo is not None:
            demo.stop()
        hass.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
