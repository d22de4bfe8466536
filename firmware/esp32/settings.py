# The node's configuration: defaults, board.py, secrets.py, then the remote
# configuration (from HA, or its cache on flash) for the sections it may change.
from binascii import hexlify

import machine

DEFAULTS = {
    "node_id": None,
    "base": "home",
    "relay": None,
    "power_sense": None,
    "alarms": None,
    "log": {"level": "info", "buffer_lines": 32, "buffer_bytes": 3072},
    "config": {"wait_s": 0.2, "retry_s": 15, "boot_wait_s": 20},
    "mqtt": {"keepalive_s": 30, "backoff_max_s": 60, "broker_tries": 3, "timeout_s": 10, "max_msg": 4096},
    "watchdog_s": 600,
    "safe_mode_after": 3,
    "stable_s": 60,
    "ntp_host": "pool.ntp.org",
    "mgmt": {"eval": False, "confirm_s": 60, "trial_s": 600, "idle_s": 15, "max_skew_s": 30},
    "wifi": {},
    "broker": {},
    "key": "",
}
# Sections the remote configuration may change; broker, WiFi and key stay local.
REMOTE_SECTIONS = ("relay", "power_sense", "alarms", "log")


def valid_id(value):
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        return False
    for ch in value:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "-_"):
            return False
    return True


def merge(config, section, values):
    if values is None:
        config[section] = None
    elif isinstance(values, dict) and isinstance(config.get(section), dict):
        merged = dict(config[section])
        merged.update(values)
        config[section] = merged
    else:
        config[section] = values


def load(remote=None):
    config = dict(DEFAULTS)
    for name, attr in (("board", "BOARD"), ("secrets", "SECRETS")):
        module = __import__(name)
        for section, values in getattr(module, attr).items():
            merge(config, section, values)
    if not config["node_id"]:
        config["node_id"] = hexlify(machine.unique_id()).decode()
    if not valid_id(config["node_id"]):
        raise ValueError("node_id must match [A-Za-z0-9_-]{1,64}")
    apply_remote(config, remote)
    return config


def apply_remote(config, remote):
    if not remote:
        return
    for section in REMOTE_SECTIONS:
        if section in remote:
            merge(config, section, remote[section])
