# The node's configuration: defaults, board.py, secrets.py, then the remote
# configuration (from HA, or its cache on flash) for the sections it may change.
from binascii import hexlify

import log
import machine

DEFAULTS = {
    "node_id": None,
    "base": "home",
    "relay": None,
    "wol": None,  # {} (or {"max_skew_s": 30}): take signed WOL without a relay
    "power_sense": None,
    "alarms": None,
    "log": {"level": "info", "buffer_lines": 32, "buffer_bytes": 3072},
    "config": {"wait_s": 0.2, "retry_s": 15, "boot_wait_s": 20},
    "mqtt": {"keepalive_s": 30, "backoff_max_s": 60, "broker_tries": 3, "timeout_s": 10, "max_msg": 4096},
    "watchdog_s": 600,
    "stable_s": 60,
    "ntp_host": "pool.ntp.org",
    "mgmt": {"eval": False, "confirm_s": 60, "trial_s": 600, "idle_s": 15, "max_skew_s": 30},
    "wifi": {},
    "broker": {},
    "key": "",
}
# Sections the remote configuration may change; broker, WiFi, key and mgmt stay local.
# HA serves `wol` and `reach` itself to the node of a server that needs them.
# Of the relay only its pulse times: whoever can publish an answer must not move or
# invert an output pin (boot.py drives the board's relay pin before any check runs).
REMOTE_SECTIONS = ("relay", "wol", "power_sense", "alarms", "log", "reach")
RELAY_SERVED = ("press_ms", "hold_ms", "max_on_ms")
MAX_PULSE_MS = 10000  # relay.CAP_MS
INPUT_ONLY = range(34, 40)  # ESP32 GPIO 34-39: input only, without pull resistors


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
    relay = config["relay"]
    if isinstance(relay, dict) and relay.get("pin") in INPUT_ONLY:
        log.error("relay refused: GPIO %d is input only" % relay["pin"])
        config["relay"] = None
    problem = config["power_sense"] and input_problem(config["power_sense"])
    if problem:
        log.error("power_sense refused: %s" % problem)
        config["power_sense"] = None
    apply_remote(config, remote)
    return config


def input_problem(spec):
    """Why an input (power sense, alarm) cannot work as configured, or None."""
    pin = spec.get("pin") if isinstance(spec, dict) else None
    if not isinstance(pin, int) or isinstance(pin, bool):
        return "no pin number"
    if spec.get("pull") in ("up", "down") and pin in INPUT_ONLY:
        # The port accepts the pull without an error, and the input floats.
        return "GPIO %d has no pull resistor: wire one, pull None" % pin
    return None


def apply_remote(config, remote):
    if not remote:
        return
    relay = config.get("relay")
    relay_pin = relay.get("pin") if isinstance(relay, dict) else None
    for section in REMOTE_SECTIONS:
        if section not in remote:
            continue
        values = remote[section]
        if section == "relay":
            values = _relay_times(values, relay)
            if values is None:
                continue
        elif section == "power_sense":
            old = config.get(section)
            merge(config, section, values)
            if not _input_ok(section, config[section], relay_pin):
                config[section] = old
            continue
        elif section == "alarms" and isinstance(values, dict):
            values = {n: v for n, v in values.items() if _input_ok("alarm " + n, v, relay_pin)}
        merge(config, section, values)


def _relay_times(values, relay):
    if not isinstance(values, dict) or not isinstance(relay, dict):
        return None
    times = {}
    for key, value in values.items():
        ok = key in RELAY_SERVED and isinstance(value, int) and not isinstance(value, bool)
        if ok and 1 <= value <= MAX_PULSE_MS:
            times[key] = value
        elif relay.get(key) != value:
            log.error("served relay.%s refused: only pulse times (1-10000 ms) are served" % key)
    return times


def _input_ok(name, spec, relay_pin):
    # An input on the relay pin would stop driving it (a pull-up could even close it).
    if spec is None:
        return True  # not wired
    problem = input_problem(spec)
    if problem is None and spec["pin"] == relay_pin:
        problem = "pin %d is the relay's" % relay_pin
    if problem is None:
        return True
    log.error("served %s refused: %s" % (name, problem))
    return False
