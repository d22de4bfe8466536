"""Device triggers: "<node> logged a critical message" and the other levels."""

from __future__ import annotations

from typing import Any

import probatio as vol
from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.device_automation.exceptions import InvalidDeviceAutomationConfig
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from . import protocol
from .const import CONF_EVENT_LEVEL, DEFAULT_EVENT_LEVEL, DOMAIN, EVENT_LOG
from .helpers import node_id_of_device
from .node_model import LEVEL_RANK

TRIGGER_TYPES = {f"logged_{level}": level for level in protocol.LEVELS}
TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend({vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES)})


def _levels_for(hass: HomeAssistant, device_id: str) -> list[str]:
    """Levels that become events for this node's entry (lower ones never fire)."""
    device, entry = dr.async_get_device_and_config_entry_for_domain(hass, device_id, domain=DOMAIN)
    if device is None or entry is None or node_id_of_device(device) is None:
        return []
    lowest = LEVEL_RANK[entry.options.get(CONF_EVENT_LEVEL, DEFAULT_EVENT_LEVEL)]
    return [level for level in protocol.LEVELS if LEVEL_RANK[level] >= lowest]


async def async_validate_trigger_config(hass: HomeAssistant, config: ConfigType) -> ConfigType:
    """Check the trigger type exists for this node."""
    config = TRIGGER_SCHEMA(config)
    if TRIGGER_TYPES[config[CONF_TYPE]] not in _levels_for(hass, config[CONF_DEVICE_ID]):
        raise InvalidDeviceAutomationConfig(
            f"{config[CONF_TYPE]} is not a trigger of device {config[CONF_DEVICE_ID]}"
        )
    return config


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """One trigger per level that becomes an event."""
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DEVICE_ID: device_id,
            CONF_DOMAIN: DOMAIN,
            CONF_TYPE: f"logged_{level}",
        }
        for level in _levels_for(hass, device_id)
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Fire on the node's `smartserver_log` events of that level."""
    return await event_trigger.async_attach_trigger(
        hass,
        event_trigger.TRIGGER_SCHEMA(
            {
                CONF_PLATFORM: CONF_EVENT,
                event_trigger.CONF_EVENT_TYPE: EVENT_LOG,
                CONF_EVENT_DATA: {
                    CONF_DEVICE_ID: config[CONF_DEVICE_ID],
                    "level": TRIGGER_TYPES[config[CONF_TYPE]],
                },
            }
        ),
        action,
        trigger_info,
        platform_type="device",
    )
