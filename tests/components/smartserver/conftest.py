"""Fixtures for the integration's tests, in the style of HA core's tailwind tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any
from unittest.mock import MagicMock, PropertyMock, patch

import pytest
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from pytest_homeassistant_custom_component.typing import MqttMockHAClient, MqttMockPahoClient
from syrupy.assertion import SnapshotAssertion

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
from tests.harness.mosquitto import Broker


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A fresh configuration folder per test: node storage is written under it."""
    return hass_tmp_config_dir


class _SnapshotExtension(HomeAssistantSnapshotExtension):  # type: ignore[misc]
    """Snapshots live in tests/components/smartserver/snapshots/."""

    snapshot_dirname = "snapshots"


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy with Home Assistant's serializer, stored under snapshots/."""
    return snapshot.use_extension(_SnapshotExtension)


@pytest.fixture
def mqtt_client_closing(mqtt_client_mock: MqttMockPahoClient) -> Generator[None]:
    """Close the mocked MQTT socket at teardown, or HA's misc timer lingers."""
    yield
    sock = MagicMock()
    sock.fileno.return_value = -1
    mqtt_client_mock.on_socket_close(mqtt_client_mock, None, sock)


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    """The hub entry."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="SmartServer",
        data={},
        options={CONF_BASE_TOPIC: "home"},
        unique_id=None,
    )


@pytest.fixture
async def init_integration(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> AsyncGenerator[MockConfigEntry]:
    """Set up the integration on the mocked MQTT client."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    yield mock_config_entry
    # an options flow may have left a reload running
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()


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
    relay_node: str = RELAY_NODE,
    command_key: str = COMMAND_KEY,
    **extra: Any,
) -> ConfigSubentryData:
    """A server subentry as the flow stores it (`extra`: more settings, e.g. the power-on method)."""
    return ConfigSubentryData(
        data={
            **extra,
            CONF_NAME: name,
            CONF_SERVER_ID: server_id,
            CONF_RELAY_NODE: relay_node,
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


@pytest.fixture
async def init_server(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,
) -> AsyncGenerator[MockConfigEntry]:
    """The hub with its server set up on the mocked MQTT client."""
    server_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(server_config_entry.entry_id)
    await hass.async_block_till_done()
    yield server_config_entry
    await hass.config_entries.async_unload(server_config_entry.entry_id)
    await hass.async_block_till_done()


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Enable the entities that are disabled by default (the force-off button)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield
