"""Config flow for SmartServer: one hub entry per Home Assistant."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import probatio as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlowWithReload,
    SubentryFlowResult,
)
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from . import protocol
from .app_image import ImageError, ImageMissing, ImageOutside, image_in_storage, load_image
from .const import (
    AGENT_ENV,
    CONF_BASE_TOPIC,
    CONF_COMMAND_KEY,
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_MAC,
    CONF_MICROPYTHON_IMAGE,
    CONF_NODE_KEY,
    CONF_POWER_ON,
    CONF_RATE_LIMIT,
    CONF_REACH_BY,
    CONF_REACH_HOST,
    CONF_REACH_INTERVAL,
    CONF_REACH_PORT,
    CONF_RELAY_NODE,
    CONF_ROTATE_KEYS,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    CONF_STORAGE,
    CONF_WOL_ADDRESS,
    CONF_WOL_PORT,
    DEFAULT_EVENT_LEVEL,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_KB,
    DEFAULT_RATE_LIMIT,
    DEFAULT_REACH_INTERVAL,
    DEFAULT_START_GRACE,
    DEFAULT_STOP_GRACE,
    DEFAULT_STORAGE,
    DOCS_URL,
    DOMAIN,
    MAX_REACH_INTERVAL,
    MIN_REACH_INTERVAL,
    SUBENTRY_SERVER,
)
from .helpers import node_id_of_device
from .power import PowerOn
from .servers import ReachBy


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

    def __init__(self) -> None:
        """Nothing discovered yet."""
        self._discovered_node: str | None = None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the base topic; MQTT must be set up and connected first."""
        # one entry per Home Assistant: the manifest's single_config_entry enforces it
        if not self.hass.config_entries.async_entries(mqtt.DOMAIN):
            return self.async_abort(reason="mqtt_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None and (base := _check_base(user_input, errors)):
            # test before configure: SmartServer speaks through HA's MQTT client only
            if not mqtt.is_connected(self.hass):
                errors["base"] = "mqtt_not_connected"
            else:
                return self.async_create_entry(title="SmartServer", data={}, options={CONF_BASE_TOPIC: base})
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_base_schema(protocol.DEFAULT_BASE), user_input),
            errors=errors,
        )

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """Offer setup when a node asks for its configuration on the default base topic."""
        node_id = protocol.parse_login_request(protocol.DEFAULT_BASE, discovery_info.topic)
        if node_id is None:
            return self.async_abort(reason="invalid_discovery_info")
        await self.async_set_unique_id(DOMAIN)
        self._abort_if_unique_id_configured()
        self._discovered_node = node_id
        self.context["title_placeholders"] = {"node": node_id}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Offer to set SmartServer up on the base topic the node used."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if not mqtt.is_connected(self.hass):
                errors["base"] = "mqtt_not_connected"
            else:
                return self.async_create_entry(
                    title="SmartServer", data={}, options={CONF_BASE_TOPIC: protocol.DEFAULT_BASE}
                )
        return self.async_show_form(
            step_id="discovery_confirm",
            data_schema=vol.Schema({}),
            errors=errors,
            description_placeholders={
                "node": self._discovered_node or "",
                "base_topic": protocol.DEFAULT_BASE,
            },
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Change the base topic and the storage folder; the entry reloads."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None and (hub := await _check_hub(self.hass, user_input, errors)):
            return self.async_update_reload_and_abort(entry, options={**entry.options, **hub})
        current = {CONF_STORAGE: DEFAULT_STORAGE, **entry.options}
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(_hub_schema(), user_input or current),
            errors=errors,
        )

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Homelab servers are subentries of the hub."""
        return {SUBENTRY_SERVER: ServerSubentryFlow}

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


def _hub_schema() -> vol.Schema:
    """Return the base topic and the storage folder (reconfigure; the options start so)."""
    return _base_schema(protocol.DEFAULT_BASE).extend(
        {vol.Required(CONF_STORAGE, default=DEFAULT_STORAGE): str}
    )


def _options_schema() -> vol.Schema:
    """Return the base topic plus the node options (storage, log rotation, events)."""
    return _hub_schema().extend(
        {
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
            vol.Optional(CONF_MICROPYTHON_IMAGE): TextSelector(),
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


async def _check_hub(
    hass: HomeAssistant, user_input: dict[str, Any], errors: dict[str, str]
) -> dict[str, str] | None:
    """Return the base topic and storage folder entered, or None with `errors` set."""
    if (base := _check_base(user_input, errors)) is None:
        return None
    folder = user_input[CONF_STORAGE].strip()
    if not folder or not await hass.async_add_executor_job(_make_storage, hass, folder):
        errors[CONF_STORAGE] = "invalid_storage"
        return None
    return {CONF_BASE_TOPIC: base, CONF_STORAGE: folder}


def _image_problem(storage: Path, name: str) -> ImageError | None:
    """Return why `name` is not a MicroPython image in `storage` (blocking), or None."""
    try:
        load_image(image_in_storage(storage, name))
    except ImageError as err:
        return err
    return None


class SmartServerOptionsFlow(OptionsFlowWithReload):
    """Change the hub's options; the entry reloads to apply them."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and validate the options."""
        errors: dict[str, str] = {}
        if user_input is not None and (hub := await _check_hub(self.hass, user_input, errors)):
            # a path in the (new) storage folder; empty: the image bundled with the release, if any
            image = user_input.get(CONF_MICROPYTHON_IMAGE, "").strip()
            storage = Path(self.hass.config.path(hub[CONF_STORAGE]))
            problem = image and await self.hass.async_add_executor_job(_image_problem, storage, image)
            if isinstance(problem, ImageOutside):
                errors[CONF_MICROPYTHON_IMAGE] = "image_outside_storage"
            elif isinstance(problem, ImageMissing):
                errors[CONF_MICROPYTHON_IMAGE] = "image_not_found"
            elif problem:
                errors[CONF_MICROPYTHON_IMAGE] = "invalid_image"
            else:
                return self.async_create_entry(
                    data={
                        **self.config_entry.options,
                        **hub,
                        CONF_LOG_MAX_KB: int(user_input[CONF_LOG_MAX_KB]),
                        CONF_LOG_BACKUPS: int(user_input[CONF_LOG_BACKUPS]),
                        CONF_EVENT_LEVEL: user_input[CONF_EVENT_LEVEL],
                        CONF_RATE_LIMIT: int(user_input[CONF_RATE_LIMIT]),
                        CONF_MICROPYTHON_IMAGE: image,
                    }
                )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                _options_schema(), user_input or dict(self.config_entry.options)
            ),
            errors=errors,
        )


# Homelab servers -------------------------------------------------------------------------

_GRACE = NumberSelector(
    NumberSelectorConfig(min=10, max=3600, step=1, unit_of_measurement="s", mode=NumberSelectorMode.BOX)
)


def _server_schema(*, new: bool, nodes: list[str]) -> vol.Schema:
    fields: dict[Any, Any] = {vol.Required(CONF_NAME): TextSelector()}
    if new:
        fields[vol.Required(CONF_SERVER_ID)] = TextSelector()
    # the nodes SmartServer has heard from, or a node id typed in (not flashed yet); none
    # for a server that Home Assistant wakes itself or that is off only
    fields[vol.Optional(CONF_RELAY_NODE)] = SelectSelector(
        SelectSelectorConfig(options=nodes, custom_value=True, sort=True, mode=SelectSelectorMode.DROPDOWN)
    )
    fields[vol.Required(CONF_START_GRACE, default=DEFAULT_START_GRACE)] = _GRACE
    fields[vol.Required(CONF_STOP_GRACE, default=DEFAULT_STOP_GRACE)] = _GRACE
    fields[vol.Required(CONF_POWER_ON, default=PowerOn.RELAY.value)] = SelectSelector(
        SelectSelectorConfig(
            options=[method.value for method in PowerOn],
            translation_key=CONF_POWER_ON,
            mode=SelectSelectorMode.DROPDOWN,
        )
    )
    fields[vol.Optional(CONF_MAC)] = TextSelector()
    fields[vol.Required(CONF_WOL_ADDRESS, default=protocol.WOL_ADDRESS)] = TextSelector()
    fields[vol.Required(CONF_WOL_PORT, default=protocol.WOL_PORT)] = _number(1, 65535)
    fields[vol.Optional(CONF_REACH_HOST)] = TextSelector()
    fields[vol.Optional(CONF_REACH_PORT)] = _number(1, 65535)
    fields[vol.Required(CONF_REACH_BY, default=ReachBy.HA.value)] = SelectSelector(
        SelectSelectorConfig(
            options=[by.value for by in ReachBy], translation_key=CONF_REACH_BY, mode=SelectSelectorMode.LIST
        )
    )
    fields[vol.Required(CONF_REACH_INTERVAL, default=DEFAULT_REACH_INTERVAL)] = _number(
        MIN_REACH_INTERVAL, MAX_REACH_INTERVAL, "s"
    )
    if not new:
        fields[vol.Required(CONF_ROTATE_KEYS, default=False)] = BooleanSelector()
    return vol.Schema(fields)


# The power-on methods that send their command to the server's node.
NODE_METHODS = (PowerOn.RELAY, PowerOn.WOL_NODE)


def _relay_node(user_input: dict[str, Any]) -> str | None:
    """Return the node id entered, None for no node."""
    return str(user_input.get(CONF_RELAY_NODE) or "").strip() or None


# Settings read from the form, or (when the errors are not empty) what is wrong with them.
_Read = tuple[dict[str, Any], dict[str, str]]


def _wol(user_input: dict[str, Any]) -> _Read:
    """Read the power-on method and, when it is Wake-on-LAN, its settings."""
    method = user_input.get(CONF_POWER_ON, PowerOn.RELAY)
    if method not in (PowerOn.WOL_NODE, PowerOn.WOL_HA):
        return {CONF_POWER_ON: method}, {}
    errors: dict[str, str] = {}
    mac = address = ""
    try:
        mac = protocol.normalize_mac(user_input.get(CONF_MAC, ""))
    except ValueError:
        errors[CONF_MAC] = "invalid_mac"
    try:
        address = protocol.validate_ipv4(user_input.get(CONF_WOL_ADDRESS, protocol.WOL_ADDRESS))
    except ValueError:
        errors[CONF_WOL_ADDRESS] = "invalid_address"
    data = {
        CONF_POWER_ON: method,
        CONF_MAC: mac,
        CONF_WOL_ADDRESS: address,
        CONF_WOL_PORT: int(user_input.get(CONF_WOL_PORT, protocol.WOL_PORT)),
    }
    return data, errors


# A host name or an IPv4/IPv6 address: what asyncio can connect to, nothing else.
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


def _reach_error(user_input: dict[str, Any], host: str) -> dict[str, str]:
    """Check the reachability check: a host, a port and, when the node checks, an IPv4 host."""
    # the interval's bounds are the selector's: HA refuses a value outside them
    if not _HOST.fullmatch(host):
        return {CONF_REACH_HOST: "invalid_host"}
    if not user_input.get(CONF_REACH_PORT):
        return {CONF_REACH_PORT: "reach_port_required"}
    if user_input.get(CONF_REACH_BY) == ReachBy.NODE:
        if _relay_node(user_input) is None:
            return {CONF_RELAY_NODE: "relay_node_required"}
        try:
            protocol.validate_ipv4(host)  # the node looks no names up
        except ValueError:
            return {CONF_REACH_HOST: "reach_host_ipv4"}
    return {}


def _reach(user_input: dict[str, Any]) -> _Read:
    """Read the reachability check's settings; an empty host: no check."""
    host = user_input.get(CONF_REACH_HOST, "").strip()
    errors = _reach_error(user_input, host) if host else {}
    data = {
        CONF_REACH_HOST: host,
        CONF_REACH_PORT: int(user_input[CONF_REACH_PORT]) if host and not errors else 0,
        CONF_REACH_BY: user_input.get(CONF_REACH_BY, ReachBy.HA),
        CONF_REACH_INTERVAL: int(user_input.get(CONF_REACH_INTERVAL, DEFAULT_REACH_INTERVAL)),
    }
    return data, errors


def _new_key() -> str:
    return secrets.token_urlsafe(32)


class ServerSubentryFlow(ConfigSubentryFlow):
    """Add or reconfigure a homelab server; shows the agent's settings to copy."""

    def __init__(self) -> None:
        """Start with nothing entered."""
        self._data: dict[str, Any] = {}

    def _read(self, user_input: dict[str, Any], own: str | None) -> _Read:
        """Read the form; `own` is the subentry being reconfigured (its ids may stay)."""
        errors: dict[str, str] = {}
        others = [
            sub.data
            for sub in self._get_entry().get_subentries_of_type(SUBENTRY_SERVER)
            if sub.subentry_id != own
        ]
        server_id = user_input.get(CONF_SERVER_ID)
        if server_id is not None:
            if not protocol.valid_id(server_id):
                errors[CONF_SERVER_ID] = "invalid_id"
            elif any(data[CONF_SERVER_ID] == server_id for data in others):
                errors[CONF_SERVER_ID] = "server_id_in_use"
        relay = _relay_node(user_input)
        if relay is None:
            if user_input.get(CONF_POWER_ON, PowerOn.RELAY) in NODE_METHODS:
                errors[CONF_RELAY_NODE] = "relay_node_required"
        elif not protocol.valid_id(relay):
            errors[CONF_RELAY_NODE] = "invalid_id"
        elif any(data.get(CONF_RELAY_NODE) == relay for data in others):
            errors[CONF_RELAY_NODE] = "relay_node_in_use"
        if not user_input[CONF_NAME].strip():
            errors[CONF_NAME] = "name_required"
        wol, wol_errors = _wol(user_input)
        reach, reach_errors = _reach(user_input)
        errors.update(wol_errors)
        errors.update(reach_errors)
        data = {
            CONF_NAME: user_input[CONF_NAME].strip(),
            CONF_START_GRACE: int(user_input[CONF_START_GRACE]),
            CONF_STOP_GRACE: int(user_input[CONF_STOP_GRACE]),
            **wol,
            **reach,
        }
        if relay:
            data[CONF_RELAY_NODE] = relay
        return data, errors

    def _known_nodes(self) -> list[str]:
        """Return the ids of the nodes that have a device under the hub entry."""
        devices = dr.async_entries_for_config_entry(dr.async_get(self.hass), self._get_entry().entry_id)
        return sorted({node for device in devices if (node := node_id_of_device(device)) is not None})

    def _take(self, data: dict[str, Any]) -> None:
        self._data.pop(CONF_RELAY_NODE, None)  # reconfigured to no node
        self._data.update(data)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Ask for the server's name, ids and grace periods; generate its keys."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = self._read(user_input, None)
            if not errors:
                self._take(data)
                self._data[CONF_SERVER_ID] = user_input[CONF_SERVER_ID]
                self._data[CONF_COMMAND_KEY] = _new_key()
                self._data[CONF_NODE_KEY] = _new_key()
                return await self.async_step_agent()
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                _server_schema(new=True, nodes=self._known_nodes()), user_input
            ),
            errors=errors,
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Change name, relay node or grace periods; optionally rotate both keys."""
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = self._read(user_input, subentry.subentry_id)
            if not errors:
                self._data = dict(subentry.data)
                self._take(data)
                if user_input[CONF_ROTATE_KEYS]:
                    self._data[CONF_COMMAND_KEY] = _new_key()
                    self._data[CONF_NODE_KEY] = _new_key()
                return await self.async_step_agent()
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _server_schema(new=False, nodes=self._known_nodes()), user_input or dict(subentry.data)
            ),
            errors=errors,
            description_placeholders={"server_id": subentry.data[CONF_SERVER_ID]},
        )

    async def async_step_agent(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Show the agent's settings and the relay node's key; saving happens on submit."""
        data = self._data
        relay = data.get(CONF_RELAY_NODE)
        if user_input is not None:
            title = data[CONF_NAME]
            if self.source == SOURCE_USER:
                return self.async_create_entry(
                    title=title,
                    data=data,
                    unique_id=data[CONF_SERVER_ID],
                    description=None if relay else "agent_only",
                    description_placeholders={"name": title, **({"relay_node": relay} if relay else {})},
                )
            return self.async_update_and_abort(
                self._get_entry(), self._get_reconfigure_subentry(), title=title, data=data
            )
        placeholders = {
            "name": data[CONF_NAME],
            "agent_settings": self._agent_settings(),
            "agent_docs": f"{DOCS_URL}/agent.md",
        }
        if not relay:
            # a server without a node: nothing to put on a node
            return self.async_show_form(
                step_id="agent_only", data_schema=vol.Schema({}), description_placeholders=placeholders
            )
        placeholders |= {
            "relay_node": relay,
            "node_key": data[CONF_NODE_KEY],
            "firmware_docs": f"{DOCS_URL}/firmware.md#setup",
        }
        return self.async_show_form(
            step_id="agent", data_schema=vol.Schema({}), description_placeholders=placeholders
        )

    async def async_step_agent_only(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Show the agent's settings of a server without a node; saving happens on submit."""
        return await self.async_step_agent(user_input)

    def _agent_settings(self) -> str:
        """Return the agent's environment lines; the broker is the one HA's MQTT uses."""
        broker: dict[str, Any] = {}
        if mqtt_entries := self.hass.config_entries.async_entries(mqtt.DOMAIN):
            broker = dict(mqtt_entries[0].data)
        values = {
            "host": broker.get("broker", "<broker host>"),
            "port": broker.get("port", 8883),
            "server_id": self._data[CONF_SERVER_ID],
            "base": self._get_entry().options.get(CONF_BASE_TOPIC, protocol.DEFAULT_BASE),
            "key": self._data[CONF_COMMAND_KEY],
        }
        return "\n".join(line.format(**values) for line in AGENT_ENV)
