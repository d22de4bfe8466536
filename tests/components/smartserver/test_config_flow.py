"""The hub's config and options flows."""

from __future__ import annotations

import pytest
from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import CONF_BASE_TOPIC, DOMAIN


async def test_user_flow_creates_hub(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mqtt_client_closing: None
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "lab"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "SmartServer"
    assert result["options"] == {CONF_BASE_TOPIC: "lab"}
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.runtime_data.base_topic == "lab"


async def test_user_flow_base_topic_defaults_to_home(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mqtt_client_closing: None
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"]
    assert schema is not None
    (field,) = (key for key in schema.schema if key == CONF_BASE_TOPIC)
    assert field.default() == "home"
    # a submission without it takes the default
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {CONF_BASE_TOPIC: "home"}


@pytest.mark.parametrize("bad", ["", "/home", "home/", "ho+me", "home/#", "a//b"])
async def test_user_flow_rejects_bad_base(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mqtt_client_closing: None, bad: str
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: bad})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_BASE_TOPIC: "invalid_base_topic"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "home"})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_single_instance(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "single_instance_allowed"


async def test_flow_needs_mqtt(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_configured"


async def test_options_change_base_and_reload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    entry = init_integration
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "#"})
    assert result["errors"] == {CONF_BASE_TOPIC: "invalid_base_topic"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "lab"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options[CONF_BASE_TOPIC] == "lab"
    assert entry.runtime_data.base_topic == "lab"
