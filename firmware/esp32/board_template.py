# Board configuration: copy to board.py and adjust. Secrets go to secrets.py.
# The remote configuration from HA may override the relay, power_sense, alarms and
# log sections (same keys), and HA adds wol and reach for a server that needs them;
# everything else stays as set here.
BOARD = {
    "node_id": None,  # None: the chip id (machine.unique_id() in hex); else [A-Za-z0-9_-]{1,64}
    "base": "home",  # base topic, the same as in the integration's options
    # Relay or optocoupler across the power-button header (docs/firmware.md).
    "relay": {
        "pin": 25,  # GPIO 25, 26, 27, 32 or 33: no glitch at boot
        "active": 1,  # level that closes the button contact
        "press_ms": 150,  # PRESS: short pulse (power on)
        "hold_ms": 8000,  # HOLD: forced off (boards need more than 4 s, some more than 6 s)
        "max_on_ms": 9000,  # hard cap on the relay's on-time: above hold_ms, at most 10 s
        "max_skew_s": 30,  # commands older or newer than this are refused
        "timer": 0,  # machine.Timer that also ends a pulse (its callback is scheduled)
    },
    # A node that only sends Wake-on-LAN (nothing wired): "relay": None and "wol": {}
    # (HA serves wol itself when the server's power-on method is WOL by the node).
    # Power LED through an optocoupler; None if not wired.
    "power_sense": {
        "pin": 34,  # input-only pins 34-39 are fine here (use an external pull-up)
        "active": 0,  # level while the server is on (optocoupler pulls down)
        "pull": None,  # "up", "down" or None (external resistor)
        "debounce_ms": 200,
        "poll_ms": 20,
    },
    # Dry contacts that log a line when they become active (docs/firmware.md); None: none.
    # "alarms": {"ups": {"pin": 35, "active": 0, "message": "UPS on battery", "level": "critical"}},
    "alarms": None,
    "log": {"level": "info", "buffer_lines": 32, "buffer_bytes": 3072},
    # wait_s: chunked answer, one message per component wait_s apart; None: one JSON.
    "config": {"wait_s": 0.2, "retry_s": 15, "boot_wait_s": 20},
    "mqtt": {"keepalive_s": 30, "backoff_max_s": 60, "broker_tries": 3, "timeout_s": 10, "max_msg": 4096},
    "watchdog_s": 600,  # reboot when the broker has not answered for this long
    "safe_mode_after": 3,  # consecutive crash boots (exceptions, hangs, panics) before safe mode
    "stable_s": 60,  # a run this long with MQTT working resets the crash count
    "ntp_host": "pool.ntp.org",
    # Remote management (docs/management.md). eval/exec run any code sent with the
    # node's key: off unless needed. A firmware update is kept once it has run healthy
    # (MQTT up, configuration fetched) for confirm_s; not healthy within trial_s: rollback.
    "mgmt": {"eval": False, "confirm_s": 60, "trial_s": 600, "idle_s": 15, "max_skew_s": 30},
}
