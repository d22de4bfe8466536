"""The hub's config and options flows."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import pytest
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.const import CONF_BASE_TOPIC, CONF_STORAGE, DOMAIN

MANIFEST = json.loads(
    (Path(__file__).parents[3] / "custom_components" / "smartserver" / "manifest.json").read_text()
)


def _login(node: str, topic: str | None = None) -> MqttServiceInfo:
    """What HA's MQTT integration hands the flow when a node asks for its configuration."""
    return MqttServiceInfo(
        topic=topic or f"home/login/{node}/set",
        payload='"6.1.2"',
        qos=0,
        retain=False,
        subscribed_topic="home/login/+/set",
        timestamp=0.0,
    )


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


def test_manifest_discovers_nodes_on_the_default_base_topic() -> None:
    assert MANIFEST["mqtt"] == ["home/login/+/set"]
    assert MANIFEST["single_config_entry"] is True


async def test_discovery_offers_setup(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mqtt_client_closing: None
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_login("garage")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"node": "garage", "base_topic": "home"}
    # a second node while the first offer is open does not make a second offer
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_login("attic")
    )
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_in_progress"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {CONF_BASE_TOPIC: "home"}
    await hass.async_block_till_done()
    # once set up, discovery offers nothing more
    later = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_login("attic")
    )
    assert later["type"] is FlowResultType.ABORT
    assert later["reason"] == "single_instance_allowed"
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("topic", ["home/login/a/b/set", "home/log/info/x", "lab/login/x/set"])
async def test_discovery_refuses_other_topics(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, topic: str
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_login("x", topic)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_user_flow_needs_a_connected_mqtt_client(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mqtt_client_closing: None
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    with patch("homeassistant.components.mqtt.is_connected", return_value=False):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "home"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "mqtt_not_connected"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "home"})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_reconfigure_changes_base_and_storage(
    hass: HomeAssistant, init_integration: MockConfigEntry, tmp_path: Path
) -> None:
    entry = init_integration
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BASE_TOPIC: "lab", CONF_STORAGE: str(blocker)}
    )
    assert result["errors"] == {CONF_STORAGE: "invalid_storage"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BASE_TOPIC: "a//b", CONF_STORAGE: str(tmp_path / "store")}
    )
    assert result["errors"] == {CONF_BASE_TOPIC: "invalid_base_topic"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BASE_TOPIC: "lab", CONF_STORAGE: str(tmp_path / "store")}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.options[CONF_BASE_TOPIC] == "lab"
    assert entry.options[CONF_STORAGE] == str(tmp_path / "store")
    assert (tmp_path / "store").is_dir()
    assert entry.runtime_data.base_topic == "lab"
