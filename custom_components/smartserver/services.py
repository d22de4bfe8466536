"""Actions of the integration: `smartserver.push_config`."""

from __future__ import annotations

import probatio as vol
from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import service

from .const import DOMAIN, SERVICE_PUSH_CONFIG
from .coordinator import SmartServerConfigEntry
from .helpers import node_id_of_device

PUSH_CONFIG_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})


async def _async_push_config(call: ServiceCall) -> None:
    """Send a node its configuration now."""
    entry: SmartServerConfigEntry
    device, entry = service.async_get_device_and_config_entry(
        call.hass, DOMAIN, call.data[ATTR_DEVICE_ID], include_child_devices=False
    )
    if (node_id := node_id_of_device(device)) is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_a_node",
            translation_placeholders={"device": device.name or device.id},
        )
    await entry.runtime_data.nodes.config.async_push_config(node_id)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions (once, whether or not an entry is loaded)."""
    hass.services.async_register(DOMAIN, SERVICE_PUSH_CONFIG, _async_push_config, schema=PUSH_CONFIG_SCHEMA)
