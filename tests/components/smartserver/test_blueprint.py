"""The "notify on a critical node log" blueprint, run by HA's automation integration."""

from __future__ import annotations

import shutil
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_mock_service,
)

from .nodes_common import settle

BLUEPRINT = Path(__file__).parents[3] / "docs" / "blueprints" / "notify_critical_log.yaml"


async def set_up_blueprint(hass: HomeAssistant, node: str) -> None:
    """Import the blueprint as HA stores it, and an automation that uses it."""
    target = Path(hass.config.path("blueprints", "automation", "smartserver", BLUEPRINT.name))
    target.parent.mkdir(parents=True)
    await hass.async_add_executor_job(shutil.copy, BLUEPRINT, target)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "alias": "critical logs",
                "use_blueprint": {
                    "path": f"smartserver/{BLUEPRINT.name}",
                    "input": {"notify_action": "notify.phone", "node": node},
                },
            }
        },
    )
    await hass.async_block_till_done()
    state = hass.states.get("automation.critical_logs")
    assert state is not None
    assert state.state == "on"


async def test_blueprint_notifies_critical_lines(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    sent = async_mock_service(hass, "notify", "phone")
    await set_up_blueprint(hass, "")
    async_fire_mqtt_message(hass, "home/log/critical/rack-relay", "UPS on battery")
    async_fire_mqtt_message(hass, "home/log/error/rack-relay", "an error is not critical")
    await settle(hass)
    assert [call.data for call in sent] == [{"title": "rack-relay: critical", "message": "UPS on battery"}]


async def test_blueprint_limited_to_one_node(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    sent = async_mock_service(hass, "notify", "phone")
    await set_up_blueprint(hass, "nas-relay")
    async_fire_mqtt_message(hass, "home/log/critical/rack-relay", "not this node")
    async_fire_mqtt_message(hass, "home/log/critical/nas-relay", "PSU fan stopped")
    await settle(hass)
    assert [call.data["message"] for call in sent] == ["PSU fan stopped"]
