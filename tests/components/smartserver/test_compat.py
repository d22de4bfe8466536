"""SmartServer clients unchanged: what pysmartnode sends and expects, replayed over MQTT.

The node side is modelled on pysmartnode's published source (its remote configuration
components of 6.1.2 and 5.1.0), not copied: 6.1.2 publishes `[VERSION, platform, WAIT]`
on `<home>/login/<id>/set` and listens on `<home>/login/<id>/#`: it skips retained
messages and topics ending in `/set`, reads the bare topic as the component count
(`int(msg)`), every deeper topic as one component (a JSON object, named by the last
level), and is done when it holds `count` distinct components. 5.1.0 publishes its
VERSION and takes the whole JSON object on `<home>/login/<id>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .nodes_common import component, node_device, published, request, root, settle, tree, write

FRIENDLY_ID = "wohnzimmer lampe.1"  # 6.1.2 uses DEVICE_NAME as the id when it is set


def chunked_node(mqtt_mock: MqttMockHAClient, node: str) -> dict[str, Any]:
    """What a 6.1.2 node registers from the published answer; fails if it would not finish."""
    own = f"home/login/{node}"
    count: int | None = None
    received: dict[str, Any] = {}
    for topic, payload, _qos, retain in published(mqtt_mock):
        if retain or not topic.startswith(own) or topic.endswith("/set"):
            continue
        if topic == own:
            count = int(payload)
            continue
        assert count is not None, "a component before the count"
        value = json.loads(payload)
        assert isinstance(value, dict)
        received.setdefault(topic[topic.rfind("/") + 1 :], value)
    assert count == len(received), f"count {count}, received {sorted(received)}"
    return received


def full_node(mqtt_mock: MqttMockHAClient, node: str) -> dict[str, Any]:
    """What a 5.1.0 node takes: the one JSON object on `<home>/login/<id>`."""
    answers = [p for t, p, _q, _r in published(mqtt_mock) if t == f"home/login/{node}"]
    assert len(answers) == 1
    value = json.loads(answers[0])
    assert isinstance(value, dict)
    return value


def folder_config(hass: HomeAssistant, node: str) -> None:
    """SmartServer's `config/` layout with names that are topic levels but not plain."""
    component(hass, node, "led.json", {"component": "LED", "pin": 2})
    write(root(hass) / "clients" / node / "config" / "garden light.hjson", "{\n  # lamp\n  pin: 5\n}\n")
    component(hass, node, "küche.json", {"pin": 12})
    component(hass, node, "_order.json", ["led", "garden light", "küche"])


EXPECTED = {"led": {"component": "LED", "pin": 2}, "garden light": {"pin": 5}, "küche": {"pin": 12}}


@pytest.mark.parametrize("node", ["node1", FRIENDLY_ID])
async def test_pysmartnode_6_chunked(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient, node: str
) -> None:
    folder_config(hass, node)
    await request(hass, node, json.dumps(["6.1.2", "esp32", 0.5]))
    assert chunked_node(mqtt_mock, node) == EXPECTED
    topics = [t for t, _p, _q, _r in published(mqtt_mock) if t.startswith("home/login/")]
    assert topics[-3:] == [
        f"home/login/{node}/led",
        f"home/login/{node}/garden light",
        f"home/login/{node}/küche",
    ]
    assert node_device(hass, init_integration, node) is not None


@pytest.mark.parametrize("node", ["node1", FRIENDLY_ID])
async def test_pysmartnode_5_full(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient, node: str
) -> None:
    folder_config(hass, node)
    await request(hass, node, '"5.1.0"')
    config = full_node(mqtt_mock, node)
    assert config.pop("_order") == ["led", "garden light", "küche"]
    assert config == EXPECTED


async def test_config_json_keys_served_chunked(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    write(root(hass) / "clients/node1/config.json", json.dumps(EXPECTED))
    await request(hass, "node1", json.dumps(["6.1.2", "esp32", 0]))
    assert chunked_node(mqtt_mock, "node1") == EXPECTED


async def test_friendly_id_logs_to_its_own_file(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    async_fire_mqtt_message(hass, f"home/log/warning/{FRIENDLY_ID}", "battery low")
    await settle(hass)
    log = root(hass) / "clients" / FRIENDLY_ID / f"{FRIENDLY_ID}.log"
    assert "battery low" in log.read_text()
    assert yaml.safe_load((root(hass) / "device_names.yaml").read_text()) == {FRIENDLY_ID: None}


@pytest.mark.parametrize(
    ("node", "folder"),
    [
        ("a.b", "a.b"),
        ("a%2Eb", "a%252Eb"),  # `%` is escaped itself: never the folder of `a.b`
        ("%2e%2e", "%252e%252e"),
        ("..%2fx", "..%252fx"),
        ("x:y", "x%3Ay"),
        ("x\\y", "x%5Cy"),
        ("tab\tid", "tab%09id"),
        ("a: b", "a%3A b"),
        ("null", "null"),
        ("ö" * 32, "ö" * 32),  # 64 bytes of UTF-8
    ],
)
async def test_unusual_ids_map_to_their_own_folder(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: str,
    folder: str,
) -> None:
    """Each id gets one folder inside `clients/`, named reversibly; nothing else is made."""
    before = tree(Path(hass.config.path()))
    write(root(hass) / "clients" / folder / "config" / "x%3Ay.json", '{"pin": 1}')
    await request(hass, node, json.dumps(["6.1.2", "esp32", 0]))
    assert chunked_node(mqtt_mock, node) == {"x:y": {"pin": 1}}
    async_fire_mqtt_message(hass, f"home/log/info/{node}", "hello")
    await settle(hass)
    assert "hello" in (root(hass) / "clients" / folder / f"{folder}.log").read_text()
    assert node in yaml.safe_load((root(hass) / "device_names.yaml").read_text())
    made = tree(Path(hass.config.path())) - before
    assert {p for p in made if p.startswith("smartserver/clients/")} == {
        f"smartserver/clients/{folder}",
        f"smartserver/clients/{folder}/config",
        f"smartserver/clients/{folder}/config/x%3Ay.json",
        f"smartserver/clients/{folder}/{folder}.log",
    }


async def test_friendly_id_node_kept_across_a_reload(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """The device of a node with a dot and a space in its id is the same node after a reload."""
    await request(hass, FRIENDLY_ID, '"5.1.0"')
    device = node_device(hass, init_integration, FRIENDLY_ID)
    assert device is not None
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await settle(hass)
    entities = er.async_entries_for_device(er.async_get(hass), device.id)
    assert entities
    for entity in entities:  # set up again at start, not left as restored placeholders
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert not state.attributes.get("restored"), entity.entity_id
