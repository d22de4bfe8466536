"""The logbook describes a node's log events in words."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .nodes_common import settle


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(recorder_mock: Recorder, enable_custom_integrations: None) -> None:
    """The recorder (which the logbook reads) must start before hass: ask for it first."""


async def _logbook(hass: HomeAssistant, hass_client: ClientSessionGenerator) -> list[dict[str, Any]]:
    await async_wait_recording_done(hass)
    client = await hass_client()
    start = (dt_util.utcnow() - timedelta(hours=1)).isoformat()
    response = await client.get(f"/api/logbook/{start}")
    assert response.status == HTTPStatus.OK
    entries: list[dict[str, Any]] = await response.json()
    return entries


async def test_log_event_reads_as_a_sentence(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
) -> None:
    assert await async_setup_component(hass, "logbook", {})
    async_fire_mqtt_message(hass, "home/log/critical/garage", "UPS on battery")
    async_fire_mqtt_message(hass, "home/log/error/garage", "x" * 500)
    await settle(hass)
    entries = await _logbook(hass, hass_client)
    lines = [e for e in entries if e.get("domain") == "smartserver"]
    assert [(e["name"], e["message"]) for e in lines] == [
        ("garage", "logged critical: UPS on battery"),
        ("garage", "logged error: " + "x" * 199 + "…"),
    ]
