"""Setup, unload and MQTT availability of the hub entry."""

from __future__ import annotations

from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver.coordinator import SmartServerData


async def test_setup_and_unload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    entry = init_integration
    assert entry.state == ConfigEntryState.LOADED
    assert isinstance(entry.runtime_data, SmartServerData)
    assert entry.runtime_data.base_topic == "home"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_mqtt_missing_retries(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """Without an MQTT client the entry waits and retries instead of failing for good."""
    mock_config_entry.add_to_hass(hass)
    with patch("homeassistant.components.mqtt.async_wait_for_mqtt_client", return_value=False) as wait:
        assert not await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    wait.assert_called_once()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert mock_config_entry.reason == "The MQTT integration is not available yet"
