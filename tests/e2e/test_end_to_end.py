"""End to end as a user meets it: SmartServer installed the HACS way into a real `hass`,
MQTT to a real broker over TLS, the dashboard in a real browser, automations through HA's API.
"""

from __future__ import annotations

import asyncio
import json
import math
import string
from pathlib import Path

from PIL import Image

from script.harness.browser import Box, Chromium
from script.harness.clients import Peer
from script.harness.hass_process import COMPONENT, HassApi, poll

from .conftest import System

# the toggle of an entities card's row: ha-entity-toggle's ha-switch
TOGGLE = ("ha-entity-toggle", "ha-switch")


def check_screenshot(path: Path, width: int, height: int, element: Box) -> None:
    """A real rendering, not a blank or splash page: full size and many colours; and the
    `element` is on it, inside the viewport, drawn (not the plain background)."""
    assert element.width >= 8, element
    assert element.height >= 8, element
    assert element.x >= 0, element
    assert element.y >= 0, element
    assert element.x + element.width <= width, element
    assert element.y + element.height <= height, element
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        crop = rgb.crop(
            (
                math.floor(element.x),
                math.floor(element.y),
                math.ceil(element.x + element.width),
                math.ceil(element.y + element.height),
            )
        )
        in_box = crop.getcolors(maxcolors=crop.width * crop.height) or []
    assert colours is None or len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"
    # a drawn switch has a track, a knob and anti-aliased edges; a background is one colour
    commonest = max(count for count, _colour in in_box)
    assert len(in_box) >= 3, f"{path}: nothing drawn at {element} ({in_box})"
    assert commonest < 0.97 * crop.width * crop.height, f"{path}: {element} is mostly one colour"


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
        shot, toggle = await browser.screenshot_with_box(system.artifacts / "dashboard.png", *TOGGLE)
        check_screenshot(shot, browser.width, browser.height, toggle)

        await browser.open_hass(
            system.hass.url, system.tokens, "/config/integrations/integration/smartserver"
        )
        await browser.wait_text("SmartServer", "Custom integration")
        # the integration's page has no toggle: the row of its entry is what must be drawn
        shot, row = await browser.screenshot_with_box(
            system.artifacts / "integration.png", "ha-config-entry-row"
        )
        check_screenshot(shot, browser.width, browser.height, row)


async def test_log_event_runs_an_automation(system: System, api: HassApi) -> None:
    """docs/automations.md: a node's log line, published to the real broker, fires
    `smartserver_log` (only from the event level up, default warning) and runs an automation."""
    node = "e2e-node"
    flag = await api.create_input_boolean("Disk failing")
    condition = (
        "{{ trigger.event.data.level == 'critical' and trigger.event.data.name == '" + node + "'"
        " and trigger.event.data.message == 'disk /dev/sda failing' }}"
    )
    automation = await api.save_automation(
        "e2e_log_event",
        {
            "alias": "Node log event",
            "triggers": [{"trigger": "event", "event_type": "smartserver_log", "event_data": {"node": node}}],
            "conditions": [{"condition": "template", "value_template": condition}],
            "actions": [{"action": "input_boolean.turn_on", "target": {"entity_id": flag}}],
        },
    )
    log = system.hass.config_dir / "smartserver" / "clients" / node / f"{node}.log"
    peer = Peer(system.broker).connect()
    try:
        # below the event level: written to the node's log, but no event
        await asyncio.to_thread(peer.publish, f"home/log/info/{node}", "booted")
        await poll(
            lambda: asyncio.to_thread(lambda: log.exists() and "booted" in log.read_text()),
            30,
            "the info line",
        )
        await asyncio.to_thread(peer.publish, f"home/log/critical/{node}", "disk /dev/sda failing")
        await api.wait_state(flag, "on")
    finally:
        peer.close()
    traces = await api.ws("trace/list", domain="automation", item_id="e2e_log_event")
    assert len(traces) == 1, traces  # the info line fired nothing
    state = await api.state(automation)
    assert state is not None
    assert state["attributes"]["last_triggered"] is not None


# Every SmartServer text through the frontend's own formatter (what a dialog, a repair or
# an entity name shows): HA's localize turns a text it cannot format into
# "Translation error: ..." (`<node>` in a text once read as an unclosed tag).
LOCALIZE_ALL = """(async (texts) => {
  const ha = document.querySelector("home-assistant");
  const categories = [...new Set(texts.map(([key]) => key.split(".")[0]))];
  let localize = ha.hass.localize;
  for (const category of categories) {
    localize = await ha.hass.loadBackendTranslation(category, "smartserver");
  }
  return texts.map(([key, names]) => {
    const values = Object.fromEntries(names.map((name) => [name, "X"]));
    return [key, localize("component.smartserver." + key, values)];
  });
})"""


def _texts(node: object, path: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, placeholder names) of every text in translations/en.json."""
    if isinstance(node, dict):
        return [t for key, value in node.items() for t in _texts(value, f"{path}.{key}" if path else key)]
    names = sorted({field for _, field, _, _ in string.Formatter().parse(str(node)) if field})
    return [(path, names)]


async def test_every_text_renders_in_the_frontend(system: System, api: HassApi) -> None:
    texts = _texts(json.loads((COMPONENT / "translations" / "en.json").read_text()))
    assert len(texts) > 100
    async with Chromium(system.artifacts / "chromium-texts") as browser:
        await browser.open_hass(
            system.hass.url, system.tokens, "/config/integrations/integration/smartserver"
        )
        await browser.wait_text("SmartServer")
        rendered = dict(await browser.evaluate(f"{LOCALIZE_ALL}({json.dumps(texts)})", await_promise=True))
    assert set(rendered) == {key for key, _ in texts}
    broken = {key: text for key, text in rendered.items() if not text or "Translation error" in text}
    assert broken == {}
    # each text came from the integration's translations, not a raw key
    assert not [key for key, text in rendered.items() if text == f"component.smartserver.{key}"]


async def _dialog_text(browser: Chromium, *needles: str) -> str:
    text = await browser.wait_text(*needles)
    assert "Translation error" not in text
    assert "component.smartserver." not in text
    return text


async def test_flows_render_in_the_frontend(system: System, api: HassApi) -> None:
    """The options, reconfigure and server flows as a user opens them: no raw key, no error."""
    page = "/config/integrations/integration/smartserver"
    async with Chromium(system.artifacts / "chromium-flows") as browser:
        await browser.open_hass(system.hass.url, system.tokens, page)
        await browser.wait_text("SmartServer")
        await browser.click("Configure")
        await _dialog_text(browser, "SmartServer options", "Base topic", "clients/")
        await browser.screenshot(system.artifacts / "options.png")

        await browser.open_hass(system.hass.url, system.tokens, page)
        await browser.click("Add server")
        await _dialog_text(browser, "Add a homelab server", "Relay node", "Start grace period")
        await browser.screenshot(system.artifacts / "server-flow.png")
