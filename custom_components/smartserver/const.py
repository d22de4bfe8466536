"""Constants for the SmartServer integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "smartserver"
LOGGER = logging.getLogger(__package__)

CONF_BASE_TOPIC: Final = "base_topic"
