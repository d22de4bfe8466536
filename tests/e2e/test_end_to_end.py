"""End to end as a user meets it: SmartServer installed the HACS way into a real `hass`,
MQTT to a real broker over TLS, the dashboard in a real browser, automations through HA's API.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from PIL import Image

from tests.harness.clients import Peer

from .browser import Chromium
from .conftest import System
from .hass_process import COMPONENT, HassApi, poll


def check_screenshot(path: Path, width: int, height: int) -> None:
    """A real rendering, not a blank or splash page: full size and many colours."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"


async def test_installed_like_hacs_and_connected(system: System, api: HassApi) -> None:
    """The integration comes from the config folder's copy; MQTT runs over TLS; nothing was installed."""
    installed = system.hass.config_dir / "custom_components" / "smartserver"
    assert installed.is_dir()
    assert not installed.is_symlink()
    assert sorted(p.name for p in installed.glob("*.py")) == sorted(p.name for p in COMPONENT.glob("*.py"))
    manifest = await api.ws("manifest/get", integration="smartserver")
    assert manifest["is_built_in"] is False
    assert manifest["version"] == json.loads((COMPONENT / "manifest.json").read_text())["version"]

    assert (await api.wait_loaded("mqtt"))["title"] == system.broker.host
    assert (await api.wait_loaded("smartserver"))["title"] == "SmartServer"
    assert f"on port {system.broker.tls_port}." in system.broker.log
    assert "u'smartserver'" in system.broker.log
    # onboarding's internet-bound entries are gone; the runtime requirements were pre-installed
    assert not {entry["domain"] for entry in await api.entries()} & {
        "met",
        "radio_browser",
        "google_translate",
    }
    assert "Attempting install" not in system.hass.log
    assert "smartserver which has not been tested" in system.hass.log

    # HA's MQTT client really talks to the broker: a service call reaches a test client
    peer = Peer(system.broker).connect()
    try:
        peer.subscribe("e2e/hello")
        await api.request(
            "POST", "/api/services/mqtt/publish", json_body={"topic": "e2e/hello", "payload": "from hass"}
        )
        assert (await asyncio.to_thread(peer.wait_topic, "e2e/hello")).payload == b"from hass"
    finally:
        peer.close()


async def test_dashboard_in_browser(system: System, api: HassApi) -> None:
    """A dashboard and the integration's page render in Chromium; screenshots are kept."""
    helper = await api.create_input_boolean("Rack lights")
    path = await api.create_dashboard(
        "smartserver-e2e", "Homelab", [{"type": "entities", "title": "Homelab rack", "entities": [helper]}]
    )
    async with Chromium(system.artifacts / "chromium") as browser:
        await browser.open_hass(system.hass.url, system.tokens, path)
        await browser.wait_text("Homelab rack", "Rack lights")
        shot = await browser.screenshot(system.artifacts / "dashboard.png")
        check_screenshot(shot, browser.width, browser.height)

        await browser.open_hass(
            system.hass.url, system.tokens, "/config/integrations/integration/smartserver"
        )
        await browser.wait_text("SmartServer", "Custom integration")
        shot = await browser.screenshot(system.artifacts / "integration.png")
        check_screenshot(shot, browser.width, browser.height)


async def test_automation_on_mqtt_message(system: System, api: HassApi) -> None:
    """An automation saved through HA's API runs when a critical log arrives over MQTT."""
    flag = await api.create_input_boolean("Critical log seen")
    automation = await api.save_automation(
        "e2e_critical_log",
        {
            "alias": "Critical node log",
            "triggers": [{"trigger": "mqtt", "topic": "home/log/critical/+"}],
            "actions": [{"action": "input_boolean.turn_on", "target": {"entity_id": flag}}],
        },
    )
    assert (await api.state(flag) or {})["state"] == "off"
    peer = Peer(system.broker).connect()
    try:
        # HA debounces new subscriptions (~1 s): publish until the automation has run
        async def fired() -> bool:
            await asyncio.to_thread(peer.publish, "home/log/critical/e2e-node", "disk /dev/sda failing")
            return bool((await api.state(flag) or {}).get("state") == "on")

        await poll(fired, 30, f"{automation} to turn on {flag}", interval=0.5)
    finally:
        peer.close()
    state = await api.state(automation)
    assert state is not None
    assert state["attributes"]["last_triggered"] is not None


async def test_automation_on_event(system: System, api: HassApi) -> None:
    """An event-triggered automation (the shape SmartServer's log events will use) runs."""
    flag = await api.create_input_boolean("Event seen")
    await api.save_automation(
        "e2e_event",
        {
            "alias": "SmartServer event",
            "triggers": [
                {"trigger": "event", "event_type": "smartserver_e2e", "event_data": {"level": "critical"}}
            ],
            "actions": [{"action": "input_boolean.turn_on", "target": {"entity_id": flag}}],
        },
    )
    await api.request("POST", "/api/events/smartserver_e2e", json_body={"level": "critical"})
    await api.wait_state(flag, "on")
