"""The servers' fused power state: evidence, commands, grace periods and repair issues."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.mqtt.const import MQTT_CONNECTION_STATE
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.smartserver.const import DOMAIN
from custom_components.smartserver.power import Issue
from script.harness.ha import COMMAND_KEY, NODE_KEY, RELAY_NODE, SERVER_ID, START_GRACE, STOP_GRACE

from .nodes_common import node_device, request, root, write
from .servers_common import (
    AGENT,
    HEARTBEAT,
    NETWORK,
    POWER,
    POWER_SET,
    REBOOT,
    SENSOR,
    STATE,
    SWITCH,
    SYSTEM,
    elapse,
    fire,
    issues,
    power_state,
    published,
    report,
    running,
    stopped,
    switch,
    verified,
)

pytestmark = pytest.mark.usefixtures("init_server")


async def test_unknown_until_evidence(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    assert power_state(hass) == STATE_UNKNOWN
    assert hass.states.get(SWITCH).state == STATE_UNKNOWN  # type: ignore[union-attr]
    assert hass.states.get(AGENT).state == STATE_UNKNOWN  # type: ignore[union-attr]
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "server_state_unknown"
    assert published(mqtt_mock, POWER_SET) == []


async def test_refresh_after_start_and_reconnect(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    server_refresh = f"home/server/{SERVER_ID}/refresh"
    node_refresh = f"home/node/{RELAY_NODE}/refresh"
    assert len(published(mqtt_mock, server_refresh)) == 1
    assert len(published(mqtt_mock, node_refresh)) == 1
    await running(hass)
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, False)
    await hass.async_block_till_done()
    assert len(published(mqtt_mock, server_refresh)) == 1
    # nothing can be sent and the evidence may be stale: unavailable
    for entity_id in (SWITCH, SENSOR, AGENT):
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, True)
    await hass.async_block_till_done()
    assert hass.states.get(SWITCH).state == STATE_ON  # type: ignore[union-attr]
    assert len(published(mqtt_mock, server_refresh)) == 2
    assert len(published(mqtt_mock, node_refresh)) == 2
    assert all(not retain for *_x, retain in published(mqtt_mock, server_refresh))


async def test_start_with_power_sense(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, issue_registry: ir.IssueRegistry
) -> None:
    await stopped(hass)
    assert hass.states.get(SWITCH).state == STATE_OFF  # type: ignore[union-attr]
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["PRESS"]
    # not optimistic: the press alone changes nothing
    assert power_state(hass) == "off"
    assert await report(hass, (POWER, "ON")) == "starting"
    assert hass.states.get(SWITCH).state == STATE_ON  # type: ignore[union-attr]
    # the agent connects; its retained SHUTTING_DOWN belongs to the last boot
    assert await report(hass, (HEARTBEAT, "ALIVE")) == "starting"
    assert hass.states.get(AGENT).state == STATE_ON  # type: ignore[union-attr]
    assert await report(hass, (STATE, "STARTING")) == "starting"
    assert await report(hass, (STATE, "ONLINE")) == "on"
    assert issues(issue_registry) == set()
    attributes = hass.states.get(SWITCH).attributes  # type: ignore[union-attr]
    assert attributes["power_state"] == "on"
    assert attributes["power_sense"] == "ON"


async def test_stop_with_power_sense(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, issue_registry: ir.IssueRegistry
) -> None:
    await running(hass)
    await switch(hass, "turn_off")
    assert verified(mqtt_mock, SYSTEM, COMMAND_KEY, SERVER_ID) == ["SHUTDOWN"]
    assert power_state(hass) == "on"
    assert await report(hass, (STATE, "SHUTTING_DOWN")) == "stopping"
    # heading down: the switch is off, and turning it on waits until the server is off
    assert hass.states.get(SWITCH).state == STATE_OFF  # type: ignore[union-attr]
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "server_stopping"
    assert published(mqtt_mock, POWER_SET) == []
    assert await report(hass, (HEARTBEAT, "DEAD")) == "stopping"
    assert hass.states.get(AGENT).state == STATE_OFF  # type: ignore[union-attr]
    assert await report(hass, (POWER, "OFF")) == "off"
    assert issues(issue_registry) == set()
    # off already: nothing more is sent
    await switch(hass, "turn_off")
    assert len(published(mqtt_mock, SYSTEM)) == 1


async def test_start_without_any_response(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, issue_registry: ir.IssueRegistry
) -> None:
    await stopped(hass)
    await switch(hass, "turn_on")
    await elapse(hass, freezer, START_GRACE - 1)
    assert issues(issue_registry) == set()
    await elapse(hass, freezer, 2)
    assert power_state(hass) == "off"
    assert issues(issue_registry) == {f"{SERVER_ID}_start_no_response"}
    issue = issue_registry.async_get_issue(DOMAIN, f"{SERVER_ID}_start_no_response")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["grace"] == str(START_GRACE)
    assert issue.translation_placeholders["name"] == "NAS"
    assert not issue.is_fixable
    # a new command clears it
    await switch(hass, "turn_on")
    assert issues(issue_registry) == set()


async def test_a_second_press_restarts_the_start_grace(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    await stopped(hass)
    await switch(hass, "turn_on")
    await elapse(hass, freezer, START_GRACE - 20)
    # still off: the button is pressed again (a fresh command: verified at its own time)
    mqtt_mock.async_publish.reset_mock()
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["PRESS"]
    # the first press's grace is over, but it was replaced
    await elapse(hass, freezer, 40)
    assert issues(issue_registry) == set()
    await elapse(hass, freezer, START_GRACE - 39)
    assert issues(issue_registry) == {f"{SERVER_ID}_start_no_response"}


async def live_running(hass: HomeAssistant) -> None:
    """Live evidence of a running server: the agent reports now, the power sense reads ON."""
    assert await report(hass, (POWER, "ON"), (HEARTBEAT, "ALIVE"), (STATE, "ONLINE")) == "on"


async def test_power_sense_off_does_not_override_a_live_agent(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    issue_registry: ir.IssueRegistry,
    caplog: pytest.LogCaptureFixture,
    hass_client: ClientSessionGenerator,
    init_server: MockConfigEntry,
) -> None:
    """A bouncing power sense must not show a running server off: ON would press its button."""
    await live_running(hass)
    assert await report(hass, (POWER, "OFF")) == "on"
    assert hass.states.get(SWITCH).state == STATE_ON  # type: ignore[union-attr]
    assert "power sense reads OFF, but the agent said ALIVE" in caplog.text
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "power_sense_contradicts"
    assert err.value.translation_placeholders == {"name": "NAS", "relay_node": RELAY_NODE}
    assert published(mqtt_mock, POWER_SET) == []
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_server)
    (server,) = diagnostics["servers"]
    assert server["runtime"]["power_sense_contradicts_agent"] is True
    assert 0 <= server["runtime"]["live_heartbeat_age_s"] < 60
    # the next heartbeat proves the agent runs: the repair issue, as before
    assert await report(hass, (HEARTBEAT, "ALIVE")) == "on"
    assert issues(issue_registry) == {f"{SERVER_ID}_power_sense_mismatch"}
    # the sense back ON ends the contradiction: ON is a no-op again
    assert await report(hass, (POWER, "ON")) == "on"
    await switch(hass, "turn_on")
    assert published(mqtt_mock, POWER_SET) == []


async def test_power_sense_off_wins_once_the_heartbeat_is_stale(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await live_running(hass)
    assert await report(hass, (POWER, "OFF")) == "on"
    # each live heartbeat keeps the agent's word for three intervals (30 s at least)
    await elapse(hass, freezer, 80)
    assert await report(hass, (HEARTBEAT, "ALIVE")) == "on"
    await elapse(hass, freezer, 80)
    assert power_state(hass) == "on"
    # the agent has gone quiet (80 s was the largest gap, so 240 s since the last beat)
    await elapse(hass, freezer, 161)
    assert power_state(hass) == "off"
    assert "no heartbeat from the agent for 240 s" in caplog.text
    # a heartbeat after all: the agent runs, the sense is wrong again
    assert await report(hass, (HEARTBEAT, "ALIVE")) == "on"


async def test_force_off(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entity_registry: er.EntityRegistry,
    issue_registry: ir.IssueRegistry,
) -> None:
    button = entity_registry.async_get("button.nas_force_off")
    assert button is not None
    assert button.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    entity_registry.async_update_entity(button.entity_id, disabled_by=None)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await running(hass, power=None)
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: "button.nas_force_off"}, blocking=True)
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["HOLD"]
    # the broker notices the dead agent: off, and no "agent lost" for a forced off
    assert await report(hass, (HEARTBEAT, "DEAD")) == "off"
    assert issues(issue_registry) == set()


async def test_reboot(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, issue_registry: ir.IssueRegistry
) -> None:
    await running(hass, power=None)
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: REBOOT}, blocking=True)
    assert verified(mqtt_mock, SYSTEM, COMMAND_KEY, SERVER_ID) == ["REBOOT"]
    # not optimistic: the command alone changes nothing
    assert power_state(hass) == "on"
    assert await report(hass, (STATE, "SHUTTING_DOWN")) == "stopping"
    # the agent's DEAD after the reboot it announced: on the way back, not off
    assert await report(hass, (HEARTBEAT, "DEAD")) == "stopping"
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "server_stopping"
    assert await report(hass, (HEARTBEAT, "ALIVE"), (STATE, "STARTING")) == "starting"
    assert await report(hass, (STATE, "ONLINE")) == "on"
    assert issues(issue_registry) == set()
    # with the agent gone the reboot is refused, nothing is sent
    assert await report(hass, (HEARTBEAT, "DEAD")) == "off"
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: REBOOT}, blocking=True)
    assert err.value.translation_key == "reboot_agent_not_connected"
    assert len(published(mqtt_mock, SYSTEM)) == 1


async def test_publish_failure(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    await running(hass)
    mqtt_mock.async_publish.side_effect = HomeAssistantError("broker gone")
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_off")
    assert err.value.translation_key == "publish_failed"
    assert err.value.translation_placeholders == {"name": "NAS", "error": "broker gone"}
    mqtt_mock.async_publish.side_effect = None


async def test_bad_payloads_are_ignored(hass: HomeAssistant, caplog: pytest.LogCaptureFixture) -> None:
    await running(hass)
    fire(hass, HEARTBEAT, "MAYBE")
    fire(hass, STATE, "DANCING")
    fire(hass, POWER, "50%")
    fire(hass, NETWORK, "{not json")
    fire(hass, NETWORK, "[1, 2]")
    fire(hass, NETWORK, '{"link": true, "pad": "' + "x" * 17000 + '"}')
    # other servers and nodes, and hostile ids, reach nobody
    assert (
        await report(
            hass,
            ("home/server/other/heartbeat", "DEAD"),
            ("home/node/other/power", "OFF"),
            ("home/server/+/heartbeat", "DEAD"),
        )
        == "on"
    )
    assert "ignoring heartbeat 'MAYBE'" in caplog.text
    assert "ignoring state 'DANCING'" in caplog.text
    assert "ignoring power sense '50%'" in caplog.text
    assert "ignoring network report: not a JSON object" in caplog.text
    assert "too large" in caplog.text
    assert hass.states.get("binary_sensor.nas_network_link").state == STATE_UNKNOWN  # type: ignore[union-attr]


async def test_network_sensors(hass: HomeAssistant) -> None:
    await running(hass)
    fire(
        hass,
        NETWORK,
        '{"ok":false,"link":true,"default_route":true,"reachable":false,'
        '"interfaces":{"eth0":{"up":true}},"problems":["1.1.1.1:53 not reachable"]}',
    )
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.nas_network_link").state == STATE_ON  # type: ignore[union-attr]
    assert hass.states.get("binary_sensor.nas_default_route").state == STATE_ON  # type: ignore[union-attr]
    assert hass.states.get("binary_sensor.nas_internet").state == STATE_OFF  # type: ignore[union-attr]
    fire(hass, NETWORK, '{"link": {"ok": false}, "internet": {"ok": true}}')
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.nas_network_link").state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get("binary_sensor.nas_default_route").state == STATE_UNKNOWN  # type: ignore[union-attr]
    assert hass.states.get("binary_sensor.nas_internet").state == STATE_ON  # type: ignore[union-attr]
    # retained results are history once the agent is gone
    fire(hass, HEARTBEAT, "DEAD")
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.nas_internet").state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    assert hass.states.get(AGENT).state == STATE_OFF  # type: ignore[union-attr]


async def test_unload_cancels_grace_timers(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, issue_registry: ir.IssueRegistry
) -> None:
    await stopped(hass)
    await switch(hass, "turn_on")
    entry: MockConfigEntry = hass.config_entries.async_entries(DOMAIN)[0]
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await elapse(hass, freezer, START_GRACE + 1)
    assert issues(issue_registry) == set()


async def test_diagnostics_redact_keys(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_server: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    await running(hass)
    await switch(hass, "turn_off")
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_server)
    text = json.dumps(diagnostics)
    assert COMMAND_KEY not in text
    assert NODE_KEY not in text
    assert diagnostics == snapshot


async def test_offline_relay_node_is_not_pressed(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    await stopped(hass)
    status = f"home/node/{RELAY_NODE}/status"
    fire(hass, status, "OFFLINE", retain=True)
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "relay_node_offline"
    assert published(mqtt_mock, POWER_SET) == []
    # neither a bad status nor a cleared one changes what the server knows of its node
    fire(hass, status, "MAYBE")
    fire(hass, status, "", retain=True)
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError, match="offline"):
        await switch(hass, "turn_on")
    fire(hass, status, "ONLINE")
    await hass.async_block_till_done()
    await switch(hass, "turn_on")
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["PRESS"]


async def test_issues_and_errors_are_translated(hass: HomeAssistant) -> None:
    """Every issue and error has its text, using only placeholders the code fills in."""
    strings_file = Path(__file__).parents[3] / "custom_components" / "smartserver" / "strings.json"
    strings = json.loads(await hass.async_add_executor_job(strings_file.read_text))
    for issue in Issue:
        text = strings["issues"][issue]
        # the fixable issue is described in its fix flow (whose dialog fills in the issue's placeholders)
        assert ("fix_flow" in text) is (issue is Issue.STOP_STILL_POWERED), issue
        steps = text["fix_flow"]["step"].values() if "fix_flow" in text else [text]
        descriptions = "".join(step["description"] for step in steps)
        used = set(re.findall(r"{(\w+)}", text["title"] + descriptions))
        assert used <= {"name", "server_id", "relay_node", "grace", "state"}, issue
    errors = {
        "publish_failed": {"name", "error"},
        "server_stopping": {"name"},
        "server_state_unknown": {"name"},
        "agent_not_connected": {"name"},
        "relay_node_offline": {"name", "relay_node"},
        "power_sense_contradicts": {"name", "relay_node"},
    }
    for key, placeholders in errors.items():
        assert set(re.findall(r"{(\w+)}", strings["exceptions"][key]["message"])) <= placeholders, key


async def test_still_powered_can_be_forced_off_from_the_issue(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    assert await async_setup_component(hass, "repairs", {})
    await running(hass)
    await switch(hass, "turn_off")
    assert await report(hass, (STATE, "SHUTTING_DOWN"), (HEARTBEAT, "DEAD")) == "stopping"
    await elapse(hass, freezer, STOP_GRACE + 1)
    issue_id = f"{SERVER_ID}_stop_still_powered"
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.is_fixable

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, context={"issue_id": issue_id})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    assert result["description_placeholders"] == {
        "name": "NAS",
        "relay_node": RELAY_NODE,
        "grace": f"{STOP_GRACE:g}",
    }
    assert published(mqtt_mock, POWER_SET) == []
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert verified(mqtt_mock, POWER_SET, NODE_KEY, RELAY_NODE) == ["HOLD"]
    assert issues(issue_registry) == set()
    assert await report(hass, (POWER, "OFF")) == "off"


async def test_relay_node_name_survives_reload(hass: HomeAssistant) -> None:
    """The update entity links to the relay node's device without resetting its name."""
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    write(root(hass) / "device_names.yaml", f"{RELAY_NODE}: rack relay\n")
    await request(hass, RELAY_NODE)
    device = node_device(hass, entry, RELAY_NODE)
    assert device is not None
    assert device.name == "rack relay"
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(f"update.{RELAY_NODE}_firmware") is not None
    device = node_device(hass, entry, RELAY_NODE)
    assert device is not None
    assert device.name == "rack relay"
