"""Device triggers: "<node> logged a critical message" and the other levels."""

from __future__ import annotations

import pytest
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_get_device_automations,
    async_mock_service,
)

from custom_components.smartserver.const import DOMAIN

from .nodes_common import node_device, settle


async def test_device_trigger_critical(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    async_fire_mqtt_message(hass, "home/log/info/node1", "hello")
    await settle(hass)
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert sorted(t["type"] for t in triggers if t["domain"] == DOMAIN) == [
        "logged_critical",
        "logged_error",
        "logged_warning",
    ]

    calls: list[ServiceCall] = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "trigger": {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device.id,
                        "type": "logged_critical",
                    },
                    "action": {
                        "service": "test.automation",
                        "data_template": {"message": "{{ trigger.event.data.message }}"},
                    },
                }
            ]
        },
    )
    async_fire_mqtt_message(hass, "home/log/error/node1", "only an error")
    async_fire_mqtt_message(hass, "home/log/critical/node2", "another node")
    async_fire_mqtt_message(hass, "home/log/CRITICAL/node1", "on fire")
    await settle(hass)
    assert [c.data["message"] for c in calls] == ["on fire"]


async def test_invalid_device_trigger_rejected(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A debug trigger does not exist while debug lines do not become events."""
    async_fire_mqtt_message(hass, "home/log/info/node1", "hello")
    await settle(hass)
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    from homeassistant.components.device_automation.exceptions import InvalidDeviceAutomationConfig

    from custom_components.smartserver import device_trigger

    config = {"platform": "device", "domain": DOMAIN, "device_id": device.id, "type": "logged_debug"}
    with pytest.raises(InvalidDeviceAutomationConfig):
        await device_trigger.async_validate_trigger_config(hass, config)
