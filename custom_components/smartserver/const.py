"""Constants for the SmartServer integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "smartserver"
LOGGER = logging.getLogger(__package__)

CONF_BASE_TOPIC: Final = "base_topic"

# Nodes: config serving and logs
CONF_STORAGE: Final = "storage_folder"
CONF_LOG_MAX_KB: Final = "log_max_kb"
CONF_LOG_BACKUPS: Final = "log_backups"
CONF_EVENT_LEVEL: Final = "event_level"
CONF_RATE_LIMIT: Final = "rate_limit"
DEFAULT_STORAGE: Final = "smartserver"
DEFAULT_LOG_MAX_KB: Final = 1024
DEFAULT_LOG_BACKUPS: Final = 5
DEFAULT_EVENT_LEVEL: Final = "warning"
DEFAULT_RATE_LIMIT: Final = 5
EVENT_LOG: Final = "smartserver_log"
SERVICE_PUSH_CONFIG: Final = "push_config"
ATTR_DEVICE_ID: Final = "device_id"
