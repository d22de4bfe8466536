"""Config flow for SmartServer: one hub entry per Home Assistant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import probatio as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)

from . import protocol
from .const import (
    CONF_BASE_TOPIC,
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_RATE_LIMIT,
    CONF_STORAGE,
    DEFAULT_EVENT_LEVEL,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_KB,
    DEFAULT_RATE_LIMIT,
    DEFAULT_STORAGE,
    DOMAIN,
)


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


def _number(low: int, high: int, unit: str | None = None) -> NumberSelector:
    config = NumberSelectorConfig(min=low, max=high, step=1, mode=NumberSelectorMode.BOX)
    if unit:
        config["unit_of_measurement"] = unit
    return NumberSelector(config)


def _options_schema() -> vol.Schema:
    """Return the base topic plus the node options (storage, log rotation, events)."""
    return _base_schema(protocol.DEFAULT_BASE).extend(
        {
            vol.Required(CONF_STORAGE, default=DEFAULT_STORAGE): str,
            vol.Required(CONF_LOG_MAX_KB, default=DEFAULT_LOG_MAX_KB): _number(16, 1024 * 1024, "KiB"),
            vol.Required(CONF_LOG_BACKUPS, default=DEFAULT_LOG_BACKUPS): _number(0, 100),
            vol.Required(CONF_EVENT_LEVEL, default=DEFAULT_EVENT_LEVEL): SelectSelector(
                SelectSelectorConfig(
                    options=list(protocol.LEVELS),
                    translation_key=CONF_EVENT_LEVEL,
                    mode=SelectSelectorMode.DROPDOWN,
                )
            ),
            vol.Required(CONF_RATE_LIMIT, default=DEFAULT_RATE_LIMIT): _number(1, 1000, "/s"),
        }
    )


def _make_storage(hass: HomeAssistant, folder: str) -> bool:
    """Create the storage folder (blocking); False if that is impossible."""
    path = Path(hass.config.path(folder))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir()


class SmartServerOptionsFlow(OptionsFlowWithReload):
    """Change the hub's options; the entry reloads to apply them."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and validate the options."""
        errors: dict[str, str] = {}
        if user_input is not None and (base := _check_base(user_input, errors)):
            folder = user_input[CONF_STORAGE].strip()
            if not folder or not await self.hass.async_add_executor_job(_make_storage, self.hass, folder):
                errors[CONF_STORAGE] = "invalid_storage"
            else:
                return self.async_create_entry(
                    data={
                        **self.config_entry.options,
                        CONF_BASE_TOPIC: base,
                        CONF_STORAGE: folder,
                        CONF_LOG_MAX_KB: int(user_input[CONF_LOG_MAX_KB]),
                        CONF_LOG_BACKUPS: int(user_input[CONF_LOG_BACKUPS]),
                        CONF_EVENT_LEVEL: user_input[CONF_EVENT_LEVEL],
                        CONF_RATE_LIMIT: int(user_input[CONF_RATE_LIMIT]),
                    }
                )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                _options_schema(), user_input or dict(self.config_entry.options)
            ),
            errors=errors,
        )
