"""The options flow: base topic plus the node options."""

from __future__ import annotations

from pathlib import Path

from homeassistant.components.diagnostics import REDACTED
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, MqttMockHAClient

from custom_components.smartserver.const import (
    CONF_BASE_TOPIC,
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_MICROPYTHON_IMAGE,
    CONF_RATE_LIMIT,
    CONF_STORAGE,
)

from .nodes_common import answers, settle, write

GOOD = {
    CONF_BASE_TOPIC: "lab",
    CONF_STORAGE: "old_smartserver",
    CONF_LOG_MAX_KB: 64.0,
    CONF_LOG_BACKUPS: 3.0,
    CONF_EVENT_LEVEL: "critical",
    CONF_RATE_LIMIT: 20.0,
}


async def test_options_flow_applies_everything(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    hass_client: ClientSessionGenerator,
) -> None:
    write(Path(hass.config.path("old_smartserver/Clients/node1/config/led.json")), '{"pin": 2}')
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(result["flow_id"], GOOD)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options == {
        CONF_BASE_TOPIC: "lab",
        CONF_STORAGE: "old_smartserver",
        CONF_LOG_MAX_KB: 64,
        CONF_LOG_BACKUPS: 3,
        CONF_EVENT_LEVEL: "critical",
        CONF_RATE_LIMIT: 20,
        CONF_MICROPYTHON_IMAGE: "",
    }
    await settle(hass)
    options = (await get_diagnostics_for_config_entry(hass, hass_client, init_integration))["nodes"][
        "options"
    ]
    assert options == {
        "base": "lab",
        "storage": REDACTED,  # the folder is checked below: the answer comes from it
        "max_bytes": 64 * 1024,
        "backups": 3,
        "event_level": "critical",
        "rate": 20.0,
    }
    # the reloaded entry serves from the old SmartServer folder on the new base topic
    mqtt_mock.async_publish.reset_mock()
    async_fire_mqtt_message(hass, "lab/login/node1/set", '"1"')
    async_fire_mqtt_message(hass, "home/login/node1/set", '"1"')
    await settle(hass)
    assert answers(mqtt_mock, "") == [("lab/login/node1", '{"led":{"pin":2},"_order":["led"]}')]


async def test_options_flow_rejects_bad_values(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    write(Path(hass.config.path("a_file")), "not a folder")
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**GOOD, CONF_STORAGE: "a_file"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_STORAGE: "invalid_storage"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**GOOD, CONF_STORAGE: "  "}
    )
    assert result["errors"] == {CONF_STORAGE: "invalid_storage"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**GOOD, CONF_BASE_TOPIC: "a/#"}
    )
    assert result["errors"] == {CONF_BASE_TOPIC: "invalid_base_topic"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], GOOD)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await settle(hass)
    options = (await get_diagnostics_for_config_entry(hass, hass_client, init_integration))["nodes"][
        "options"
    ]
    assert options["base"] == "lab"
