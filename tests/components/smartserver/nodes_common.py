"""Helpers for the node tests: storage paths, files, MQTT messages and answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver.helpers import node_identifier


def node_device(hass: HomeAssistant, entry: ConfigEntry, node: str) -> dr.DeviceEntry | None:
    """The device of a node."""
    return dr.async_get(hass).async_get_device_by_identifier(node_identifier(node), entry.entry_id)


def root(hass: HomeAssistant) -> Path:
    """The default storage folder."""
    return Path(hass.config.path("smartserver"))


def write(path: Path, text: str | bytes) -> Path:
    """Write a file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def component(hass: HomeAssistant, node: str, filename: str, value: Any) -> Path:
    """Write one component file of a node as JSON."""
    return write(root(hass) / "clients" / node / "config" / filename, json.dumps(value))


def tree(base: Path) -> set[str]:
    """Every path under `base`, relative, for before/after comparisons."""
    return {str(p.relative_to(base)) for p in base.rglob("*")} if base.exists() else set()


async def settle(hass: HomeAssistant) -> None:
    """Let handlers, executor jobs and background tasks finish."""
    await hass.async_block_till_done(wait_background_tasks=True)


async def written(hass: HomeAssistant) -> None:
    """Handle what was received (log lines once per loop turn), then let rate-limited states be written."""
    await settle(hass)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await settle(hass)


async def node_traffic(hass: HomeAssistant) -> None:
    """A node that asked for its config, logged and reported its status."""
    component(hass, "node1", "led.json", {"pin": 2})
    await request(hass, "node1")
    async_fire_mqtt_message(hass, "home/node/node1/status", "ONLINE", retain=True)
    for level, text in [("info", "booted"), ("error", "sensor missing"), ("critical", "brownout")]:
        async_fire_mqtt_message(hass, f"home/log/{level}/node1", text)
    await written(hass)


async def request(hass: HomeAssistant, node: str, payload: str | bytes = '"1.0.0"') -> None:
    """A node's configuration request, answered before returning."""
    async_fire_mqtt_message(hass, f"home/login/{node}/set", payload)
    await settle(hass)


def published(mqtt_mock: MqttMockHAClient) -> list[tuple[str, str, int, bool]]:
    """(topic, payload, qos, retain) of everything the integration published."""
    return [tuple(call.args[:4]) for call in mqtt_mock.async_publish.call_args_list]


def answers(mqtt_mock: MqttMockHAClient, prefix: str = "home/login/") -> list[tuple[str, str]]:
    """(topic, payload) of published configuration answers."""
    return [(t, p) for t, p, _q, _r in published(mqtt_mock) if t.startswith(prefix)]


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10) -> None:
    """Poll a condition that has nothing to await (files, mock calls, counters)."""
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
