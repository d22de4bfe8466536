"""One homelab server from start to finish, with every real program in the loop.

A user adds a server through HA's own subentry flow, flashes the keys it shows onto the
relay node (the real firmware on MicroPython's unix port) and into the agent (the real
`smartserver_agent` with a fake logind on a private system bus), and then works the power
switch from a dashboard in headless Chromium: ON presses the node's relay, OFF shuts the
server down through logind. A UPS alarm input on the node logs a critical line, which runs
an automation.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from smartserver_node.firmware import firmware_version

from script.harness.agent import AgentProcess, agent_env
from script.harness.board import FIRMWARE, Board, board_config, secrets_config
from script.harness.browser import Chromium
from script.harness.clients import Peer
from script.harness.hass_process import HassApi, agent_settings, integration_problems, poll
from script.harness.micropython import MicroPython
from script.harness.ntp import NtpServer
from script.harness.system_bus import SystemBus

from .conftest import System, keep_logs
from .test_end_to_end import TOGGLE, check_screenshot

NODE = "rack-relay"
VERSION = firmware_version(FIRMWARE)
SERVER = "nas01"
RELAY_PIN, SENSE_PIN, UPS_PIN = 25, 34, 32  # the UPS contact uses the pin's own pull-up
SENSE_ON, SENSE_OFF = 0, 1  # the power LED's optocoupler pulls the input low
UPS_ON_BATTERY, UPS_ON_MAINS = 0, 1  # the UPS's dry contact closes to ground
NODE_CONFIG = {
    "e2e_marker": {"served_by": "home assistant"},
    # the alarm input comes from HA's configuration, as a user would add it
    "alarms": {
        "ups": {"pin": UPS_PIN, "active": 0, "pull": "up", "debounce_ms": 50, "message": "UPS on battery"}
    },
}

# the power switch's toggle, found through the shadow roots; its centre and checked state
FIND_TOGGLE = """(() => {
  const find = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'HA-ENTITY-TOGGLE') return el;
      if (el.shadowRoot) { const found = find(el.shadowRoot); if (found) return found; }
    }
    return null;
  };
  const toggle = find(document);
  if (!toggle) return null;
  const target = (toggle.shadowRoot && toggle.shadowRoot.querySelector('ha-switch')) || toggle;
  const rect = target.getBoundingClientRect();
  if (!rect.width) return null;
  return {x: rect.x + rect.width / 2, y: rect.y + rect.height / 2, checked: !!target.checked};
})()"""


async def click_toggle(browser: Chromium) -> bool:
    """Click the switch's toggle with a real mouse event; return whether it was checked."""
    spot: dict[str, Any] = await poll(lambda: browser.evaluate(FIND_TOGGLE), 30, "the power toggle")
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
        await browser.send("Input.dispatchMouseEvent", type=kind, x=spot["x"], y=spot["y"], **extra)
    return bool(spot["checked"])


async def toggle_shows(browser: Chromium, checked: bool) -> None:
    """Wait until the page's toggle shows `checked`."""

    async def shows() -> bool:
        spot = await browser.evaluate(FIND_TOGGLE)
        return spot is not None and spot["checked"] is checked

    await poll(shows, 30, f"the page's toggle to be {'on' if checked else 'off'}")


async def test_server_from_flow_to_power_off(
    system: System, api: HassApi, micropython: MicroPython, ntp_server: NtpServer, tmp_path: Path
) -> None:
    """Add, boot, alert, switch on, switch off: the whole story of one server."""
    entry = await api.wait_loaded("smartserver")
    placeholders = await api.add_server(entry["entry_id"], "NAS", SERVER, NODE)
    assert placeholders["relay_node"] == NODE
    node_key = placeholders["node_key"]
    settings = agent_settings(placeholders)
    command_key = settings["SMARTSERVER_KEY"]
    assert settings["SMARTSERVER_SERVER_ID"] == SERVER
    assert settings["SMARTSERVER_BROKER_PORT"] == str(system.broker.tls_port)
    assert len(node_key) >= 40
    assert len(command_key) >= 40
    assert node_key != command_key
    # what the user saw is what was saved
    assert [s["title"] for s in await api.subentries(entry["entry_id"])] == ["NAS"]

    # the node's configuration, where the integration serves it from
    clients = system.hass.config_dir / "smartserver" / "clients" / NODE
    clients.mkdir(parents=True, exist_ok=True)
    (clients / "config.json").write_text(json.dumps(NODE_CONFIG))

    root = tmp_path
    bus = SystemBus(Path(tempfile.mkdtemp(prefix="scenario-bus-")))  # short: a socket path
    board = Board(
        micropython,
        root / "board",
        board_config(system.broker, node_id=NODE),
        {**secrets_config(system.broker), "key": node_key},
        system.broker.certs.ca_pem,
    )
    agent: AgentProcess | None = None
    watcher = Peer(system.broker).connect()
    ok = False
    try:
        watcher.subscribe("home/#")
        bus.start()
        # the server is off: its power LED is dark
        board.set_input(SENSE_PIN, SENSE_OFF)
        board.set_input(UPS_PIN, UPS_ON_MAINS)
        board.boot()
        await asyncio.to_thread(board.wait_output, "running:", 60)
        await asyncio.to_thread(board.wait_output, "configuration received: 2 components", 30)
        assert board.read_flash("remote_config.json") == NODE_CONFIG

        # 3. a critical log line of the node runs a device-trigger automation
        async def node_device() -> str | None:
            for device in await api.ws("config/device_registry/list"):
                if ["smartserver", f"node_{NODE}"] in device["identifiers"]:
                    return str(device["id"])
            return None

        device_id = await poll(node_device, 30, f"the device of {NODE}")
        triggers = await api.ws("device_automation/trigger/list", device_id=device_id)
        critical = next(t for t in triggers if t["type"] == "logged_critical")
        flag = await api.create_input_boolean("Relay node critical")
        await api.save_automation(
            "scenario_node_critical",
            {
                "alias": "Relay node critical",
                "triggers": [critical],
                "actions": [{"action": "input_boolean.turn_on", "target": {"entity_id": flag}}],
            },
        )
        assert (await api.state(flag) or {})["state"] == "off"
        # the mains fail: the UPS's contact makes the node log a critical line
        board.set_input(UPS_PIN, UPS_ON_BATTERY)
        await api.wait_state(flag, "on")
        node_log = system.hass.config_dir / "smartserver" / "clients" / NODE / f"{NODE}.log"

        async def logged() -> bool:
            return node_log.exists() and "UPS on battery" in node_log.read_text()

        await poll(logged, 10, "the critical line in the node's log file")

        # the firmware inside the release zip (as HACS installed it) is what the node runs
        registry = await api.ws("config/entity_registry/list")
        firmware = next(e["entity_id"] for e in registry if e["unique_id"] == f"node_{NODE}_firmware")
        update = await api.wait_state(firmware, "off", within=30)
        assert update["attributes"]["installed_version"] == update["attributes"]["latest_version"] == VERSION

        # 4. the switch, as the integration named it, on a dashboard
        switch = next(
            e["entity_id"]
            for e in registry
            if e["platform"] == "smartserver"
            and e["entity_id"].startswith("switch.")
            and SERVER in e["unique_id"]
        )
        assert switch == "switch.nas_power"
        await api.wait_state(switch, "off", within=60)
        path = await api.create_dashboard(
            "homelab-servers", "Homelab", [{"type": "entities", "title": "Servers", "entities": [switch]}]
        )
        async with Chromium(system.artifacts / "chromium-scenario") as browser:
            await browser.open_hass(system.hass.url, system.tokens, path)
            await browser.wait_text("Servers", "NAS")
            assert await click_toggle(browser) is False
            await asyncio.to_thread(board.wait, lambda: len(board.pulses(RELAY_PIN)) >= 1, 20, "a PRESS")
            press = board.pulses(RELAY_PIN)
            assert len(press) == 1, press
            assert 100 <= press[0].ms <= 1000, press
            # the server powers up: LED on, then the agent starts
            board.set_input(SENSE_PIN, SENSE_ON)
            agent = AgentProcess(
                agent_env(root / "agent", system.broker, bus, server_id=SERVER, key=command_key),
                root / "agent",
            ).start()
            await asyncio.to_thread(agent.wait_output, "connected", 1, 30)
            await api.wait_state(switch, "on", within=60)
            await api.wait_state("sensor.nas_power_state", "on", within=60)
            await toggle_shows(browser, True)

            # 5. off: a clean shutdown through logind, then the power LED goes dark
            assert await click_toggle(browser) is True
            await asyncio.to_thread(agent.wait_output, "logind accepted PowerOff", 1, 30)
            await asyncio.to_thread(
                watcher.wait_for,
                lambda msgs: any(
                    m.topic == f"home/server/{SERVER}/heartbeat" and m.payload == b"DEAD" for m in msgs
                ),
                20,
            )
            await api.wait_state(switch, "off", within=30)
            board.set_input(SENSE_PIN, SENSE_OFF)
            await api.wait_state("sensor.nas_power_state", "off", within=30)
            await toggle_shows(browser, False)
            assert len(bus.calls("PowerOff")) == 1
            assert len(board.pulses(RELAY_PIN)) == 1  # OFF never touched the relay

            # a clean run: no repair issue of the integration's
            issues = (await api.ws("repairs/list_issues"))["issues"]
            assert [i for i in issues if i["domain"] == "smartserver"] == []
            assert integration_problems(system.hass.log) == []

            # 6. the dashboard as it ends
            shot, toggle = await browser.screenshot_with_box(system.artifacts / "scenario.png", *TOGGLE)
            check_screenshot(shot, browser.width, browser.height, toggle)
        ok = True
    finally:
        if agent is not None:
            agent.stop()
        board.stop()
        bus.stop()
        watcher.close()
        if not ok:
            keep_logs(system.artifacts, board.console, root / "agent" / "agent.log")
