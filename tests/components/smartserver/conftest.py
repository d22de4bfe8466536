"""Fixtures for the integration's tests, in the style of HA core's tailwind tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, Generator
from unittest.mock import MagicMock, PropertyMock, patch

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from pytest_homeassistant_custom_component.typing import MqttMockHAClient, MqttMockPahoClient
from syrupy.assertion import SnapshotAssertion

from custom_components.smartserver.const import (
    CONF_BASE_TOPIC,
    DOMAIN,
)
from script.harness.ha import (  # noqa: F401 (fixtures)
    COMMAND_KEY,
    NODE_KEY,
    RELAY_NODE,
    SERVER_ID,
    START_GRACE,
    STOP_GRACE,
    auto_enable_custom_integrations,
    hass_config_dir,
    mqtt_real,
    server_config_entry,
    server_subentry,
)
from script.harness.procs import udp_listener


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
def listener(socket_enabled: None) -> Generator[socket.socket]:
    """A UDP socket on loopback where a magic packet is sent (Wake-on-LAN tests)."""
    sock = udp_listener(timeout=5)
    yield sock
    sock.close()


@pytest.fixture
async def init_server(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    server_config_entry: MockConfigEntry,  # noqa: F811 (the fixture, imported above)
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
