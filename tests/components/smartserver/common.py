"""Helpers for the integration's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from homeassistant.core import HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event


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
