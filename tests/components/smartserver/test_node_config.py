"""Configuration serving with HA's mocked MQTT client and real files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import node_config, storage
from custom_components.smartserver.const import DOMAIN

from .nodes_common import (
    answers,
    component,
    node_device,
    published,
    request,
    root,
    settle,
    tree,
    wait_until,
    write,
)


async def test_components_with_order_full_answer(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    component(hass, "node1", "button.json", {"component": "Button", "pin": 4})
    hjson_text = "{\n  # a comment\n  component: HTU21D\n  i2c: 1\n}\n"
    write(root(hass) / "clients/node1/config/htu.hjson", hjson_text)
    component(hass, "node1", "_order.json", ["htu", "button"])
    mqtt_mock.async_publish.reset_mock()

    await request(hass, "node1")

    assert published(mqtt_mock) == [
        (
            "home/login/node1",
            '{"button":{"component":"Button","pin":4},"htu":{"component":"HTU21D","i2c":1},'
            '"_order":["htu","button"]}',
            1,
            False,
        )
    ]


async def test_suffix_safe_stems_and_generated_order(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """`button.json` is `button` (SmartServer's rstrip made `butto` of some names)."""
    for name in ("nosj.json", "button.json", "a.b.hjson", "jsonn.json"):
        write(root(hass) / "clients/node1/config" / name, "{}")
    await request(hass, "node1")
    config = json.loads(answers(mqtt_mock)[-1][1])
    assert list(config) == ["a.b", "button", "jsonn", "nosj", "_order"]
    assert config["_order"] == ["a.b", "button", "jsonn", "nosj"]


async def test_config_json_served_as_is(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    write(root(hass) / "clients/node1/config.json", '{"zeta": {"a": 1}, "alpha": [1, 2]}')
    component(hass, "node1", "ignored.json", {"never": "read"})
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"zeta":{"a":1},"alpha":[1,2]}')]


async def test_config_hjson_preferred_over_json(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(root(hass) / "clients/node1/config.json", '{"from": "json"}')
    write(root(hass) / "clients/node1/config.hjson", "{\n  from: hjson\n}\n")
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"from":"hjson"}')]
    assert "clients/node1/config.json ignored: clients/node1/config.hjson is used" in caplog.text


async def test_chunked_answer(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    component(hass, "node1", "button.json", {"pin": 4})
    component(hass, "node1", "led.json", {"pin": 2})
    component(hass, "node1", "_order.json", ["led", "button"])
    await request(hass, "node1", '["6.0.0", "esp32", 0]')
    assert answers(mqtt_mock) == [
        ("home/login/node1", "2"),
        ("home/login/node1/led", '{"pin":2}'),
        ("home/login/node1/button", '{"pin":4}'),
    ]
    assert all(qos == 1 and not retain for _t, _p, qos, retain in published(mqtt_mock))


async def test_chunked_answer_waits_between_components(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """With wait_s the components follow one by one; a new request restarts the answer."""
    component(hass, "node1", "a.json", {})
    component(hass, "node1", "b.json", {})
    async_fire_mqtt_message(hass, "home/login/node1/set", '["6", "esp32", 30]')
    await wait_until(lambda: bool(answers(mqtt_mock)))
    assert answers(mqtt_mock) == [("home/login/node1", "2")]
    # the node restarted: its new request replaces the slow answer
    await request(hass, "node1", '["6", "esp32", 0]')
    assert answers(mqtt_mock) == [
        ("home/login/node1", "2"),
        ("home/login/node1", "2"),
        ("home/login/node1/a", "{}"),
        ("home/login/node1/b", "{}"),
    ]


async def test_chunked_leaves_out_unusable_component_names(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key `set` or with `/` cannot be a component topic (it would be read as a request)."""
    write(root(hass) / "clients/node1/config.json", '{"set": {}, "a/b": {}, "ok": {}}')
    await request(hass, "node1", '["6", "esp32", 0]')
    assert answers(mqtt_mock) == [("home/login/node1", "1"), ("home/login/node1/ok", "{}")]
    assert "component 'set' cannot be a topic level" in caplog.text


async def test_new_node_gets_directory_and_name_entry(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    write(root(hass) / "device_names.yaml", "# my nodes\nother: null")
    await request(hass, "node1")
    assert (root(hass) / "clients/node1/config").is_dir()
    assert (root(hass) / "device_names.yaml").read_text() == "# my nodes\nother: null\nnode1: null\n"
    assert answers(mqtt_mock) == [("home/login/node1", '{"_order":[]}')]
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    assert device.name == "node1"
    # a second request adds nothing
    await request(hass, "node1")
    assert (root(hass) / "device_names.yaml").read_text().count("node1") == 1


async def test_status_alone_creates_the_device_but_no_files(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """docs/nodes.md: files wait for the first configuration request or log line."""
    before = tree(root(hass))
    async_fire_mqtt_message(hass, "home/node/node1/status", "ONLINE")
    await settle(hass)
    assert node_device(hass, init_integration, "node1") is not None
    assert tree(root(hass)) == before
    async_fire_mqtt_message(hass, "home/log/info/node1", "booted")
    await settle(hass)
    await wait_until((root(hass) / "clients/node1/config").is_dir)
    assert "node1: null" in (root(hass) / "device_names.yaml").read_text()


async def test_named_node_is_renamed(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    component(hass, "node1", "led.json", {"pin": 2})
    write(root(hass) / "clients/node1/node1.log", "old line\n")
    write(root(hass) / "clients/node1/node1.log.1", "older line\n")
    write(root(hass) / "device_names.yaml", "node1: kitchen\n")
    await request(hass, "node1")
    kitchen = root(hass) / "clients/kitchen"
    assert not (root(hass) / "clients/node1").exists()
    assert (kitchen / "kitchen.log").read_text() == "old line\n"
    assert (kitchen / "kitchen.log.1").read_text() == "older line\n"
    assert answers(mqtt_mock) == [("home/login/node1", '{"led":{"pin":2},"_order":["led"]}')]
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    assert device.name == "kitchen"


@pytest.mark.parametrize(
    "names",
    [
        "node1: ../escape\n",
        "node1: node2\nnode2: null\n",
        "node1: twin\nnode3: twin\n",
        "node1: '.hidden'\n",
    ],
)
async def test_unusable_names_keep_the_id(
    hass: HomeAssistant, init_integration: MockConfigEntry, names: str, caplog: pytest.LogCaptureFixture
) -> None:
    write(root(hass) / "device_names.yaml", names)
    await request(hass, "node1")
    assert (root(hass) / "clients/node1/config").is_dir()
    assert tree(root(hass)) <= {"device_names.yaml", "clients", "clients/node1", "clients/node1/config"}
    assert "is not usable" in caplog.text


async def test_legacy_clients_folder(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """An old SmartServer folder (`Clients/`) works unchanged."""
    write(root(hass) / "Clients/kitchen/config/led.json", '{"pin": 2}')
    write(root(hass) / "device_names.yaml", "node1: kitchen\n")
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"led":{"pin":2},"_order":["led"]}')]
    assert not (root(hass) / "clients").exists()


async def test_files_reread_on_every_request(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    component(hass, "node1", "led.json", {"pin": 2})
    await request(hass, "node1")
    component(hass, "node1", "led.json", {"pin": 5})
    await request(hass, "node1")
    assert [json.loads(p)["led"]["pin"] for _t, p in answers(mqtt_mock)] == [2, 5]


async def test_other_files_and_subdirectories_ignored_with_warning(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    component(hass, "node1", "led.json", {"pin": 2})
    write(root(hass) / "clients/node1/config/notes.txt", "hello")
    write(root(hass) / "clients/node1/config/led.json~", "{broken")
    write(root(hass) / "clients/node1/config/old/led.json", "{broken")
    write(root(hass) / "clients/node1/config/a+b.json", "{}")
    write(root(hass) / "clients/node1/config/led%2Ejson.json", "{}")  # not how `led.json` is escaped
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"led":{"pin":2},"_order":["led"]}')]
    assert "clients/node1/config/notes.txt ignored: not .json or .hjson" in caplog.text
    assert "clients/node1/config/led.json~ ignored" in caplog.text
    assert "clients/node1/config/old/ ignored: subdirectories are not read" in caplog.text
    assert "'a+b' is not a usable component name" in caplog.text
    assert "'led%2Ejson' is not a usable component name" in caplog.text


async def test_order_mismatch_warns(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    component(hass, "node1", "led.json", {})
    component(hass, "node1", "fan.json", {})
    component(hass, "node1", "_order.json", ["led", "ghost"])
    await request(hass, "node1")
    assert "_order names components without a file: ghost" in caplog.text
    assert "components not in _order are not built: fan" in caplog.text


@pytest.mark.parametrize(
    ("filename", "content", "line", "reason"),
    [
        ("config/led.json", '{\n  "pin": 2,\n  "x": \n}\n', 4, "Expecting value"),
        ("config/led.hjson", "{\n  pin: 2\n  list: [\n}\n", 4, "punctuator"),
        ("config/led.json", b'{\n"a": 1,\n"b": "\xff"\n}', 3, "not UTF-8"),
        ("config/led.json", "[1, 2]", 1, "a component must be an object"),
        ("config/_order.json", '{"a": 1}', 1, "must be a list of component names"),
        ("config.json", '{"a": 1}\n{', 2, "Extra data"),
        ("config.hjson", "just text", 1, "must be an object"),
    ],
)
async def test_unparsable_file_no_answer_and_repair_issue(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
    filename: str,
    content: str | bytes,
    line: int,
    reason: str,
) -> None:
    bad = write(root(hass) / "clients/node1" / filename, content)
    await request(hass, "node1")
    assert answers(mqtt_mock) == []
    assert f"Configuration of node1 not served: clients/node1/{filename}, line {line}" in caplog.text
    issue = ir.async_get(hass).async_get_issue(DOMAIN, "config_file_node1")
    assert issue is not None
    assert issue.translation_key == "config_file_error"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["node"] == "node1"
    assert issue.translation_placeholders["file"] == f"clients/node1/{filename}"
    assert issue.translation_placeholders["line"] == str(line)
    assert reason in issue.translation_placeholders["reason"]

    # fixed: the next request is answered and the issue clears itself
    bad.unlink()
    component(hass, "node1", "led.json", {"pin": 2})
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"led":{"pin":2},"_order":["led"]}')]
    assert ir.async_get(hass).async_get_issue(DOMAIN, "config_file_node1") is None


async def test_broken_device_names_blocks_answers_until_fixed(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    names = write(root(hass) / "device_names.yaml", "node1: kitchen\nnode2: [unclosed\n")
    await request(hass, "node1")
    assert answers(mqtt_mock) == []
    issue = ir.async_get(hass).async_get_issue(DOMAIN, "config_file_node1")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["file"] == "device_names.yaml"
    assert issue.translation_placeholders["line"] == "3"
    assert names.read_text() == "node1: kitchen\nnode2: [unclosed\n"  # never appended to
    names.write_text("node1: kitchen\n")
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"_order":[]}')]
    assert ir.async_get(hass).async_get_issue(DOMAIN, "config_file_node1") is None


@pytest.mark.parametrize(
    "text",
    [
        "node1: kitchen\n# a comment\nnode2: null\n",
        "yes: on\n123: 456\n'007': bond\nkü che: Küche ✓\n",
        "node1: a\nnode1: b\n",  # the last one counts
        "",
        "node1: kitchen\nnode2: [unclosed\n",
        "- a list\n",
        "node1: {nested: map}\n",
    ],
)
def test_names_read_alike_with_either_yaml_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """libyaml's loader (used where PyYAML has it) reads device_names.yaml as the pure-Python one."""
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("this PyYAML has no libyaml")
    (tmp_path / "device_names.yaml").write_text(text, encoding="utf-8")

    def read(loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]) -> tuple[object, ...]:
        monkeypatch.setattr(storage, "_SAFE_LOADER", loader)
        files = storage.Storage(tmp_path)
        names = files.read_names()
        error = files.names_error
        return names, None if error is None else (error.path, error.line)

    assert read(yaml.CSafeLoader) == read(yaml.SafeLoader)


@pytest.mark.parametrize("node", ["..", ".", "+", "#", "a" * 300, "a" * 65, "ö" * 33, "x\0y"])
async def test_hostile_node_ids_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
    node: str,
) -> None:
    write(root(hass) / "device_names.yaml", "")
    before = tree(Path(hass.config.path()))
    await request(hass, node)
    await request(hass, "../x")  # not even one level: never matched
    assert answers(mqtt_mock) == []
    assert tree(Path(hass.config.path())) == before
    assert (root(hass) / "device_names.yaml").read_text() == ""
    assert not dr.async_entries_for_config_entry(dr.async_get(hass), init_integration.entry_id)
    assert "not a valid node id" in caplog.text


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe1.0", "not UTF-8"),
        ('["1.0", "esp32"]', "must be [version, platform, wait_s]"),
        ('["1.0", "esp32", 1, 2]', "must be [version, platform, wait_s]"),
        ('["1.0", "esp32", -1]', "wait_s must be between"),
        ('["1.0", "esp32", 61]', "wait_s must be between"),
        ('["1.0", "esp32", true]', "wait_s must be a number"),
        ('["1.0", "esp32", "0.5"]', "wait_s must be a number"),
        ('["1.0", 5, 0.5]', "must be strings"),
        ("[1.0, ", "not valid JSON"),
        ("x" * 100_000, "too large"),
    ],
)
async def test_malformed_requests_warned(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
    payload: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING)
    await request(hass, "node1", payload)
    assert answers(mqtt_mock) == []
    assert "Ignored configuration request from node1" in caplog.text
    assert reason in caplog.text
    # and the integration still answers the next good request
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"_order":[]}')]


async def test_answers_never_loop_back(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """Answers (and a request on `home/log/...`) are not requests."""
    await request(hass, "node1")

    async_fire_mqtt_message(hass, "home/login/node1", '{"_order":[]}')
    async_fire_mqtt_message(hass, "home/login/node1/led/set", "{}")
    await settle(hass)
    assert len(answers(mqtt_mock)) == 1


async def test_push_config_action(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    await request(hass, "node1", '["6", "esp32", 0]')
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    component(hass, "node1", "led.json", {"pin": 2})
    mqtt_mock.async_publish.reset_mock()
    await hass.services.async_call(DOMAIN, "push_config", {"device_id": device.id}, blocking=True)
    await settle(hass)
    # in the form the node last asked for
    assert answers(mqtt_mock) == [("home/login/node1", "1"), ("home/login/node1/led", '{"pin":2}')]

    write(root(hass) / "clients/node1/config/led.json", "{oops")
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "push_config", {"device_id": device.id}, blocking=True)
    assert err.value.translation_key == "config_file_error"

    other = dr.async_get(hass).async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={(DOMAIN, "server_nas")}
    )
    with pytest.raises(ServiceValidationError) as err2:
        await hass.services.async_call(DOMAIN, "push_config", {"device_id": other.id}, blocking=True)
    assert err2.value.translation_key == "not_a_node"


# a diagnostic sensor, disabled by default
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_last_served_time_and_hash(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    component(hass, "node1", "led.json", {"pin": 2})
    await request(hass, "node1")
    served = hass.states.get("sensor.node1_config_last_served")
    digest = hass.states.get("sensor.node1_config_hash")
    assert served is not None
    assert digest is not None
    assert served.state not in ("unknown", "unavailable")
    # sha256 of the answer, first 12 hex digits
    import hashlib

    payload = answers(mqtt_mock)[-1][1]
    assert digest.state == hashlib.sha256(payload.encode()).hexdigest()[:12]
    await settle(hass)


async def test_requests_of_one_loop_turn_share_one_executor_job(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """A burst is read and parsed in one executor job; a broken file only fails its node."""
    component(hass, "node1", "led.json", {"pin": 1})
    write(root(hass) / "clients/node2/config/led.json", "{oops")
    component(hass, "node3", "led.json", {"pin": 3})
    mqtt_mock.async_publish.reset_mock()
    with patch.object(node_config, "prepare_answers", wraps=node_config.prepare_answers) as prepare:
        for node in ("node1", "node2", "node3", "node1"):  # node1 asks again: one answer
            async_fire_mqtt_message(hass, f"home/login/{node}/set", '"1.0.0"')
        await settle(hass)
    assert [call.args[1] for call in prepare.call_args_list] == [["node1", "node2", "node3", "node1"]]
    assert sorted(answers(mqtt_mock)) == [
        ("home/login/node1", '{"led":{"pin":1},"_order":["led"]}'),
        ("home/login/node3", '{"led":{"pin":3},"_order":["led"]}'),
    ]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, "config_file_node2")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["file"] == "clients/node2/config/led.json"
    assert "Expecting property name" in issue.translation_placeholders["reason"]


async def test_failed_or_cancelled_batch_reaches_every_request(hass: HomeAssistant) -> None:
    """An executor job that fails as a whole fails each request; a cancelled one cancels them."""
    failed = hass.loop.create_future()
    failed.set_exception(OSError("executor gone"))
    waiting = [hass.loop.create_future(), hass.loop.create_future()]
    waiting[1].cancel()  # replaced meanwhile: left alone
    node_config.resolve_batch(waiting, failed)
    assert isinstance(waiting[0].exception(), OSError)

    cancelled = hass.loop.create_future()
    cancelled.cancel()
    waiting = [hass.loop.create_future()]
    node_config.resolve_batch(waiting, cancelled)
    assert waiting[0].cancelled()


async def test_json_orjson_refuses_is_served_as_before(
    hass: HomeAssistant, init_integration: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """orjson parses JSON first; what only the standard library accepts still works the same."""
    write(root(hass) / "clients/node1/config/led.json", '{"big": 123456789012345678901234567890, "x": NaN}')
    await request(hass, "node1")
    assert answers(mqtt_mock) == [
        ("home/login/node1", '{"led":{"big":123456789012345678901234567890,"x":NaN},"_order":["led"]}')
    ]


async def test_hjson_wins_over_json_of_the_same_component(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    component(hass, "node1", "led.json", {"pin": 1})
    write(root(hass) / "clients/node1/config/led.hjson", "{pin: 2}")
    await request(hass, "node1")
    assert answers(mqtt_mock) == [("home/login/node1", '{"led":{"pin":2},"_order":["led"]}')]
    assert "clients/node1/config/led.json ignored: clients/node1/config/led.hjson is used" in caplog.text


async def test_unreadable_component_not_served(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = root(hass) / "clients/node1/config"
    folder.mkdir(parents=True)
    (folder / "led.json").symlink_to(folder / "missing.json")
    await request(hass, "node1")
    assert answers(mqtt_mock) == []
    assert "Could not read the configuration of node1" in caplog.text
