"""script/develop's runner: a local TLS broker and Home Assistant with SmartServer set up.

Everything lives in the git-ignored .dev/ folder and is reused by the next run:
certificates, the broker's password, ports, Home Assistant's config and its owner.
Ctrl-C stops what this started, by PID. Run through script/develop (it bootstraps).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from tests.e2e.hass_process import REPO, HassApi, HassProcess, Owner, set_up
from tests.harness.certs import certs_at, certs_valid, make_certs
from tests.harness.mosquitto import Broker
from tests.harness.procs import free_port, port_open

DEV = REPO / ".dev"
STATE = DEV / "dev.json"
OWNER_USERNAME = "dev"


def _port(preferred: int) -> int:
    return preferred if not port_open(preferred) else free_port()


def load_state() -> dict[str, Any]:
    """Ports and passwords, chosen on the first run and kept for the next ones."""
    state: dict[str, Any] = json.loads(STATE.read_text()) if STATE.exists() else {}
    defaults: dict[str, Callable[[], object]] = {
        "hass_port": lambda: _port(8123),
        "mqtt_port": lambda: _port(1883),
        "mqtts_port": lambda: _port(8883),
        "mqtt_password": lambda: secrets.token_urlsafe(12),
        "owner_password": lambda: secrets.token_urlsafe(9),
    }
    for key, make in defaults.items():
        state.setdefault(key, make())
    DEV.mkdir(exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2) + "\n")
    STATE.chmod(0o600)
    return state


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def banner(hass: HassProcess, broker: Broker, owner: Owner, seconds: float) -> str:
    """What a new user needs to log in and to point nodes and agents at the broker."""
    return f"""
SmartServer development instance ready in {seconds:.0f} s

  Home Assistant  {hass.url}
    log in as     {owner.username} / {owner.password}
    log           {hass.config_dir / "home-assistant.log"}
    config        {hass.config_dir}  (custom_components/smartserver links to this checkout)
  MQTT broker     {broker.host}:{broker.tls_port} (TLS), {broker.host}:{broker.port} (plain)
    user          {broker.username} / {broker.password}
    CA            {broker.certs.ca}

Restart Home Assistant from its UI to load code changes. Ctrl-C stops everything.
"""


def main() -> int:
    """Start the broker and Home Assistant, set them up, wait for Ctrl-C."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    state = load_state()
    pki = DEV / "pki"
    certs = certs_at(pki) if certs_valid(pki, 86400) else make_certs(pki, days=3650)
    broker = Broker(
        DEV / "mosquitto",
        certs,
        password=state["mqtt_password"],
        port=state["mqtt_port"],
        tls_port=state["mqtts_port"],
    )
    hass = HassProcess(DEV / "config", port=state["hass_port"], name="SmartServer dev")
    owner = Owner(OWNER_USERNAME, state["owner_password"])
    try:
        broker.start()
        hass.install_component("symlink")
        hass.write_configuration()
        hass.start()
        print(f"starting Home Assistant on {hass.url} (log: {hass.config_dir / 'home-assistant.log'}) ...")

        async def prepare() -> None:
            async with HassApi(hass) as api:
                await set_up(api, owner, broker, report=lambda step: print(step, flush=True))

        asyncio.run(prepare())
        print(banner(hass, broker, owner, time.monotonic() - started), flush=True)
        while True:
            hass.check_alive()
            if not broker.running:
                print("mosquitto exited:\n" + broker.log[-2000:], file=sys.stderr)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        hass.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
