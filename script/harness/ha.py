"""Home Assistant test fixtures and helpers that tests, benchmarks and the demo share.

The integration's conftest imports these; benchmarks/conftest.py too (loaded after HA's
test plugin, pytest-homeassistant-custom-component).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartserver.const import (
    CONF_BASE_TOPIC,
    CONF_COMMAND_KEY,
    CONF_NODE_KEY,
    CONF_RELAY_NODE,
    CONF_SERVER_ID,
    CONF_START_GRACE,
    CONF_STOP_GRACE,
    DOMAIN,
    SUBENTRY_SERVER,
)

from .mosquitto import Broker


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A fresh configuration folder per test: node storage is written under it."""
    return hass_tmp_config_dir


@pytest.fixture
async def mqtt_real(
    hass: HomeAssistant,
    mosquitto: Broker,
    socket_enabled: None,
    mock_hass_config: None,
) -> AsyncGenerator[MockConfigEntry]:
    """Home Assistant's real MQTT client, connected to the real broker over TLS."""
    entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={
            "broker": mosquitto.host,
            "port": mosquitto.tls_port,
            "username": mosquitto.username,
            "password": mosquitto.password,
            "certificate": mosquitto.certs.ca_pem,
            "protocol": "5",
            "discovery": False,
        },
        version=2,
        minor_version=1,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await mqtt.async_wait_for_mqtt_client(hass)
    yield entry
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


# Homelab servers ---------------------------------------------------------------------

SERVER_ID = "nas"
RELAY_NODE = "relay1"
COMMAND_KEY = "test-command-key-for-nas"
NODE_KEY = "test-node-key-for-relay1"
START_GRACE = 120
STOP_GRACE = 60


def server_subentry(
    server_id: str = SERVER_ID,
    name: str = "NAS",
    relay_node: str | None = RELAY_NODE,
    command_key: str = COMMAND_KEY,
    **extra: Any,
) -> ConfigSubentryData:
    """A server subentry as the flow stores it (`extra`: more settings, e.g. the power-on method).

    `relay_node` None: a server without a node (the flow stores no relay node then).
    """
    return ConfigSubentryData(
        data={
            **extra,
            CONF_NAME: name,
            CONF_SERVER_ID: server_id,
            **({CONF_RELAY_NODE: relay_node} if relay_node else {}),
            CONF_START_GRACE: START_GRACE,
            CONF_STOP_GRACE: STOP_GRACE,
            CONF_COMMAND_KEY: command_key,
            CONF_NODE_KEY: NODE_KEY,
        },
        subentry_type=SUBENTRY_SERVER,
        title=name,
        unique_id=server_id,
    )


def server_hub(**settings: Any) -> MockConfigEntry:
    """The hub entry with one server, NAS, switched by relay1; `settings` add to its subentry."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="SmartServer",
        data={},
        options={CONF_BASE_TOPIC: "home"},
        subentries_data=[server_subentry(**settings)],
    )


@pytest.fixture
def server_config_entry() -> MockConfigEntry:
    """The hub entry with one server, NAS, switched by relay1."""
    return server_hub()


async def wait_state(hass: HomeAssistant, entity_id: str, value: str) -> None:
    """Wait until the entity has the state `value`; fail after 15 s."""
    await wait_entity(hass, entity_id, lambda state: state.state == value)


async def wait_entity(hass: HomeAssistant, entity_id: str, test: Callable[[State], bool]) -> None:
    """Wait until the entity's state passes `test`; fail after 15 s."""
    reached = asyncio.Event()

    @callback
    def check(*_args: Any) -> None:
        state = hass.states.get(entity_id)
        if state is not None and test(state):
            reached.set()

    unsubscribe = async_track_state_change_event(hass, [entity_id], check)
    check()
    try:
        async with asyncio.timeout(15):
            await reached.wait()
    finally:
        unsubscribe()
