"""Constants for the SmartServer integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "smartserver"
LOGGER = logging.getLogger(__package__)
# Distinct keys (ids, messages) a warning is logged once for: hostile input is endless.
MAX_WARNED: Final = 200

CONF_BASE_TOPIC: Final = "base_topic"

# Homelab servers: one config subentry each
SUBENTRY_SERVER: Final = "server"
CONF_SERVER_ID: Final = "server_id"
CONF_RELAY_NODE: Final = "relay_node"
CONF_START_GRACE: Final = "start_grace"
CONF_STOP_GRACE: Final = "stop_grace"
CONF_COMMAND_KEY: Final = "command_key"
CONF_NODE_KEY: Final = "node_key"
CONF_ROTATE_KEYS: Final = "rotate_keys"
# How the server is turned on (power.PowerOn); Wake-on-LAN's MAC, address and port
CONF_POWER_ON: Final = "power_on"
CONF_MAC: Final = "mac"
CONF_WOL_ADDRESS: Final = "wol_address"
CONF_WOL_PORT: Final = "wol_port"
# Reachability: a TCP port on the server that HA or the server's node checks at an interval
CONF_REACH_HOST: Final = "reach_host"
CONF_REACH_PORT: Final = "reach_port"
CONF_REACH_BY: Final = "reach_by"
CONF_REACH_INTERVAL: Final = "reach_interval"
DEFAULT_REACH_INTERVAL: Final = 30
MIN_REACH_INTERVAL: Final = 5
MAX_REACH_INTERVAL: Final = 3600
REACH_TIMEOUT_S: Final = 5
DEFAULT_START_GRACE: Final = 300
DEFAULT_STOP_GRACE: Final = 180

# The agent's environment (firmware/agent), shown by the server subentry flow to copy.
AGENT_ENV: Final = (
    "SMARTSERVER_BROKER_HOST={host}",
    "SMARTSERVER_BROKER_PORT={port}",
    "SMARTSERVER_USERNAME=<the agent's broker user>",
    "SMARTSERVER_PASSWORD=<its password>",
    "# SMARTSERVER_CA=/etc/smartserver-agent/broker-ca.pem",
    "SMARTSERVER_SERVER_ID={server_id}",
    "SMARTSERVER_BASE_TOPIC={base}",
    "SMARTSERVER_KEY={key}",
)

# Where the server flow's last step links to (description placeholders: no URLs in strings)
DOCS_URL: Final = "https://github.com/smartserver-dev/smartserver/blob/main/docs"

# Nodes: config serving and logs
CONF_STORAGE: Final = "storage_folder"
CONF_LOG_MAX_KB: Final = "log_max_kb"
CONF_LOG_BACKUPS: Final = "log_backups"
CONF_EVENT_LEVEL: Final = "event_level"
CONF_RATE_LIMIT: Final = "rate_limit"
# A MicroPython image (.app-bin) in the storage folder for the nodes' MicroPython updates
CONF_MICROPYTHON_IMAGE: Final = "micropython_image"
DEFAULT_STORAGE: Final = "smartserver"
DEFAULT_LOG_MAX_KB: Final = 1024
DEFAULT_LOG_BACKUPS: Final = 5
DEFAULT_EVENT_LEVEL: Final = "warning"
DEFAULT_RATE_LIMIT: Final = 5
EVENT_LOG: Final = "smartserver_log"
SERVICE_PUSH_CONFIG: Final = "push_config"
ATTR_DEVICE_ID: Final = "device_id"
# Repair issue: new nodes held back beyond the budget (nodes.NEW_NODES_BURST)
ISSUE_NEW_NODES: Final = "too_many_new_nodes"
