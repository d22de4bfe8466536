"""Base entity of the SmartServer platforms."""

from __future__ import annotations

from homeassistant.helpers.entity import Entity


class SmartServerEntity(Entity):
    """Pushed over MQTT, named after its device's translation key."""

    _attr_has_entity_name = True
    _attr_should_poll = False
