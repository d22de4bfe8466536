"""Config flow for SmartServer: one hub entry per Home Assistant."""

from __future__ import annotations

from typing import Any

import probatio as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.core import callback

from . import protocol
from .const import CONF_BASE_TOPIC, DOMAIN


def _base_schema(default: str) -> vol.Schema:
    return vol.Schema({vol.Required(CONF_BASE_TOPIC, default=default): str})


def _check_base(user_input: dict[str, Any], errors: dict[str, str]) -> str | None:
    try:
        return protocol.validate_base(user_input[CONF_BASE_TOPIC])
    except ValueError:
        errors[CONF_BASE_TOPIC] = "invalid_base_topic"
        return None


class SmartServerConfigFlow(ConfigFlow, domain=DOMAIN):
    """Create the single SmartServer hub entry."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the base topic; MQTT must be set up first."""
        if self._async_current_entries():
            return self.async_abort(reason="single_instance_allowed")
        if not self.hass.config_entries.async_entries(mqtt.DOMAIN):
            return self.async_abort(reason="mqtt_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None and (base := _check_base(user_input, errors)):
            return self.async_create_entry(title="SmartServer", data={}, options={CONF_BASE_TOPIC: base})
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_base_schema(protocol.DEFAULT_BASE), user_input),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> SmartServerOptionsFlow:
        """Options: the base topic."""
        return SmartServerOptionsFlow()


class SmartServerOptionsFlow(OptionsFlowWithReload):
    """Change the hub's options; the entry reloads to apply them."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and validate the options."""
        errors: dict[str, str] = {}
        if user_input is not None and (base := _check_base(user_input, errors)):
            return self.async_create_entry(data={**self.config_entry.options, CONF_BASE_TOPIC: base})
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                _base_schema(protocol.DEFAULT_BASE), user_input or dict(self.config_entry.options)
            ),
            errors=errors,
        )
