"""Diagnostics of the entry and of a node's device, snapshots; log text redacted."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from .nodes_common import node_device, node_traffic


async def test_diagnostics_snapshot(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    await node_traffic(hass)
    served = props("config_served_at")
    result = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert result == snapshot(exclude=served)
    assert result["nodes"]["nodes"]["node1"]["config_served_at"] > 0
    device = node_device(hass, init_integration, "node1")
    assert device is not None
    result = await get_diagnostics_for_device(hass, hass_client, init_integration, device)
    assert result == snapshot(name="device", exclude=served)
    assert "brownout" not in str(result)
