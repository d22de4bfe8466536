"""A real `hass` process, set up over REST and websocket the way a user does it in the UI.

script/develop and the end-to-end tests both use this module: onboarding, MQTT and
SmartServer through their config flows, automations and helpers through HA's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
from homeassistant.components.http.config import HTTP_STORAGE_SCHEMA

from script.harness.mosquitto import Broker
from script.harness.procs import free_port, stop

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "custom_components" / "smartserver"
# Onboarding's core_config step starts these flows; their entries reach the internet.
ONBOARDING_EXTRAS = ("met", "radio_browser", "google_translate")
# met's flow aborts without a home location (CONFIGURATION sets none): the others always come
ONBOARDING_EXPECTED = ("radio_browser", "google_translate")
LOG_FILE = "home-assistant.log"

CONFIGURATION = """\
# Written by smartserver's dev tooling (script/harness/hass_process.py).
homeassistant:
  name: {name}
  time_zone: UTC
  unit_system: metric
  country: DE
  currency: EUR
automation: !include automations.yaml
# what a user sees of SmartServer over time (no default_config: its discovery
# integrations would send multicast onto the host's networks)
history:
logbook:
logger:
  default: warning
  logs:
    # "Attempting install of ..." would show that a requirement was not pre-installed
    homeassistant.util.package: info
    custom_components.smartserver: debug
"""

# HA 2026 keeps its HTTP settings in .storage/http; an `http:` YAML block is migrated
# with a "deprecated YAML" repair and must be promoted within 5 minutes. The dev tooling
# writes the store itself, as HA would after a promotion, so a new user sees no repair.
HTTP_STORE_VERSION = (2, 2)


class HassError(RuntimeError):
    """Home Assistant answered something other than what the setup expects."""


@dataclass(frozen=True)
class Owner:
    """The user that onboarding creates."""

    username: str
    password: str
    name: str = "SmartServer Owner"


@dataclass(frozen=True)
class Tokens:
    """OAuth tokens from /auth/token."""

    access_token: str
    refresh_token: str
    expires_in: int
    client_id: str

    def for_frontend(self, url: str) -> dict[str, Any]:
        """What the frontend keeps in localStorage.hassTokens."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "expires": int(time.time() * 1000) + self.expires_in * 1000,
            "hassUrl": url,
            "clientId": self.client_id,
        }


def hass_binary() -> Path:
    """The `hass` of the venv this Python runs in."""
    path = Path(sys.executable).parent / "hass"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run script/bootstrap")
    return path


@dataclass
class HassProcess:
    """One `hass` process on 127.0.0.1 with its own config folder."""

    config_dir: Path
    port: int = field(default_factory=free_port)
    name: str = "SmartServer"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL, as the frontend and the OAuth client id use it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """Home Assistant's log so far."""
        path = self.config_dir / LOG_FILE
        return path.read_text(errors="replace") if path.exists() else ""

    def install_component(self, how: Literal["release", "symlink"]) -> Path:
        """Put custom_components/smartserver into the config folder.

        "release" unpacks the zip that script/release builds, as HACS installs a
        `zip_release`; a symlink lets a developer's edits apply on restart.
        """
        target = self.config_dir / "custom_components" / "smartserver"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        if how == "symlink":
            target.symlink_to(COMPONENT, target_is_directory=True)
            return target
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                [sys.executable, str(REPO / "script" / "release"), "--out", out],
                check=True,
                capture_output=True,
            )
            filename = json.loads((REPO / "hacs.json").read_text())["filename"]
            with zipfile.ZipFile(Path(out) / filename) as release:
                release.extractall(target)
        return target

    def write_http_store(self) -> None:
        """Listen on 127.0.0.1 and this port: HA's HTTP store, unless HA keeps one already."""
        store = self.config_dir / ".storage" / "http"
        if store.exists():
            return
        stable = HTTP_STORAGE_SCHEMA({"server_host": "127.0.0.1", "server_port": self.port})
        stable.update({"created_at": datetime.now(UTC).isoformat(), "error": None, "error_message": None})
        major, minor = HTTP_STORE_VERSION
        data = {"stable": stable, "pending": None, "yaml_migration_done": True}
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps({"version": major, "minor_version": minor, "key": "http", "data": data}))
        store.chmod(0o600)

    def write_configuration(self) -> None:
        """Write configuration.yaml and the HTTP store."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.write_http_store()
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(name=self.name))
        automations = self.config_dir / "automations.yaml"
        if not automations.exists():
            automations.write_text("[]\n")

    def start(self) -> None:
        """Start `hass`; its output goes to hass.out beside the log."""
        assert self.proc is None or self.proc.poll() is not None, "hass already running"
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        with (self.config_dir / "hass.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(hass_binary()), "--config", str(self.config_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.config_dir,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops hass by PID
            )

    def check_alive(self) -> None:
        """Raise with the log's tail if `hass` has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise HassError(f"hass exited with {self.proc.returncode}:\n{self.log[-4000:]}")

    def stop(self) -> None:
        """Stop `hass` by PID (SIGTERM lets it shut down cleanly)."""
        stop(self.proc, timeout=60)


async def poll(check: Callable[[], Awaitable[Any]], within: float, what: str, interval: float = 0.25) -> Any:
    """Await `check` until it returns something truthy, or raise TimeoutError."""
    deadline = time.monotonic() + within
    while True:
        if result := await check():
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(interval)


class HassApi:
    """REST and websocket calls to one Home Assistant, as one user."""

    def __init__(self, hass: HassProcess, tokens: Tokens | None = None) -> None:
        self.hass = hass
        self.url = hass.url
        self.tokens = tokens
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ws_id = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the websocket and the HTTP session."""
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        await self.session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.access_token}"} if self.tokens else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | aiohttp.FormData | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        """Call the REST API and return the decoded JSON answer."""
        async with self.session.request(
            method, self.url + path, json=json_body, data=form, headers=self._headers()
        ) as response:
            text = await response.text()
            if response.status not in ok:
                raise HassError(f"{method} {path}: HTTP {response.status}: {text[:500]}")
            return json.loads(text) if text else None

    async def ws(self, command: str, **fields: Any) -> Any:
        """Send one websocket command and return its result."""
        if self._ws is None:
            assert self.tokens is not None, "log in first"
            self._ws = await self.session.ws_connect(self.url + "/api/websocket")
            await self._ws.receive_json()  # auth_required
            await self._ws.send_json({"type": "auth", "access_token": self.tokens.access_token})
            if (answer := await self._ws.receive_json())["type"] != "auth_ok":
                raise HassError(f"websocket auth failed: {answer}")
        self._ws_id += 1
        await self._ws.send_json({"id": self._ws_id, "type": command, **fields})
        while True:
            message = await self._ws.receive_json()
            if message.get("id") == self._ws_id and message["type"] == "result":
                if not message["success"]:
                    raise HassError(f"{command}: {message['error']}")
                return message["result"]

    # --- HTTP up, onboarding, login -------------------------------------------------

    async def wait_http(self, within: float = 180) -> None:
        """Wait until the HTTP server answers (onboarding's status needs no login)."""

        async def answers() -> bool:
            self.hass.check_alive()
            try:
                await self.onboarded()
            except aiohttp.ClientError:
                return False
            return True

        await poll(answers, within, "Home Assistant's HTTP server")

    async def onboarded(self) -> bool:
        """Whether the owner exists already (once onboarding is over, its API is gone)."""
        async with self.session.get(self.url + "/api/onboarding") as response:
            if response.status == 404:
                return True
            response.raise_for_status()
            steps = await response.json()
        return any(step["step"] == "user" and step["done"] for step in steps)

    async def _token(self, code: str) -> Tokens:
        client_id = self.url + "/"
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        answer = await self.request("POST", "/auth/token", form=form)
        self.tokens = Tokens(answer["access_token"], answer["refresh_token"], answer["expires_in"], client_id)
        return self.tokens

    async def onboard(self, owner: Owner) -> Tokens:
        """Create the owner and finish every onboarding step, as the first-run wizard does."""
        client_id = self.url + "/"
        answer = await self.request(
            "POST",
            "/api/onboarding/users",
            json_body={
                "client_id": client_id,
                "name": owner.name,
                "username": owner.username,
                "password": owner.password,
                "language": "en",
            },
        )
        tokens = await self._token(answer["auth_code"])
        await self.request("POST", "/api/onboarding/core_config")
        await self.request("POST", "/api/onboarding/analytics")
        await self.request(
            "POST",
            "/api/onboarding/integration",
            json_body={"client_id": client_id, "redirect_uri": client_id + "?auth_callback=1"},
        )
        return tokens

    async def login(self, owner: Owner) -> Tokens:
        """Log in with the owner's password through HA's login flow."""
        client_id = self.url + "/"
        flow = await self.request(
            "POST",
            "/auth/login_flow",
            json_body={"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
        )
        answer = await self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            json_body={"client_id": client_id, "username": owner.username, "password": owner.password},
        )
        if answer.get("type") != "create_entry":
            raise HassError(f"login refused: {answer.get('errors')}")
        return await self._token(answer["result"])

    async def wait_running(self, within: float = 180) -> None:
        """Wait until Home Assistant has finished starting."""

        async def running() -> bool:
            self.hass.check_alive()
            config = await self.request("GET", "/api/config")
            return bool(config["state"] == "RUNNING")

        await poll(running, within, "Home Assistant to finish starting")

    # --- config entries -----------------------------------------------------------

    async def entries(self, domain: str | None = None) -> list[dict[str, Any]]:
        """The config entries, optionally of one domain."""
        found: list[dict[str, Any]] = await self.request("GET", "/api/config/config_entries/entry")
        return [entry for entry in found if domain is None or entry["domain"] == domain]

    async def remove_onboarding_extras(self, settle: float = 20) -> list[str]:
        """Delete the entries onboarding created that need the internet.

        Onboarding starts their flows as background tasks: wait until the expected
        ones have shown up (or `settle` seconds have passed), deleting as they appear.
        """
        removed: list[str] = []

        async def all_removed() -> bool:
            for entry in await self.entries():
                if entry["domain"] in ONBOARDING_EXTRAS:
                    await self.request("DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}")
                    removed.append(entry["domain"])
            return set(removed) >= set(ONBOARDING_EXPECTED)

        # a flow that did not create its entry leaves nothing to remove
        with contextlib.suppress(TimeoutError):
            await poll(all_removed, settle, "onboarding's extra entries")
        return removed

    async def run_flow(self, handler: str, *inputs: dict[str, Any]) -> dict[str, Any]:
        """Run a config flow step by step, as the UI does, and return its end result."""
        result: dict[str, Any] = await self.request(
            "POST",
            "/api/config/config_entries/flow",
            json_body={"handler": handler, "show_advanced_options": False},
        )
        for user_input in inputs:
            if result["type"] != "form":
                raise HassError(f"{handler} flow ended early: {result}")
            result = await self.request(
                "POST", f"/api/config/config_entries/flow/{result['flow_id']}", json_body=user_input
            )
            if result.get("errors"):
                raise HassError(f"{handler} flow refused {user_input}: {result['errors']}")
        if result["type"] != "create_entry":
            raise HassError(f"{handler} flow did not create an entry: {result}")
        return result

    async def upload_file(self, path: Path) -> str:
        """Upload a file as the UI's file selector does; return its file id."""
        form = aiohttp.FormData()
        form.add_field(
            "file",
            await asyncio.to_thread(path.read_bytes),
            filename=path.name,
            content_type="application/octet-stream",
        )
        answer = await self.request("POST", "/api/file_upload", form=form)
        return str(answer["file_id"])

    async def add_mqtt(self, broker: Broker) -> dict[str, Any]:
        """Add the MQTT integration for the broker's TLS listener, with its CA uploaded."""
        ca_id = await self.upload_file(broker.certs.ca)
        return await self.run_flow(
            "mqtt",
            {
                "broker": broker.host,
                "port": broker.tls_port,
                "protocol": "5",
                "username": broker.username,
                "password": broker.password,
                "other_settings": {
                    "set_client_cert": False,
                    "set_ca_cert": "custom",
                    "certificate": ca_id,
                    "transport": "tcp",
                },
            },
        )

    async def add_smartserver(self, base_topic: str = "home") -> dict[str, Any]:
        """Add SmartServer through its config flow."""
        return await self.run_flow("smartserver", {"base_topic": base_topic})

    async def add_server(
        self,
        entry_id: str,
        name: str,
        server_id: str,
        relay_node: str | None,
        grace_s: int = 120,
        **settings: Any,
    ) -> dict[str, str]:
        """Run the "Add server" subentry flow as the UI does; return what its key step shows.

        `relay_node` None: a server without a node; `settings`: more fields (power-on method).
        """
        flow: dict[str, Any] = await self.request(
            "POST",
            "/api/config/config_entries/subentries/flow",
            json_body={"handler": [entry_id, "server"], "show_advanced_options": False},
        )
        if flow.get("step_id") != "user":
            raise HassError(f"the server flow did not start: {flow}")
        path = f"/api/config/config_entries/subentries/flow/{flow['flow_id']}"
        fields = {
            "name": name,
            "server_id": server_id,
            **({"relay_node": relay_node} if relay_node else {}),
            "start_grace": grace_s,
            "stop_grace": grace_s,
            **settings,
        }
        shown: dict[str, Any] = await self.request("POST", path, json_body=fields)
        if shown.get("step_id") != ("agent" if relay_node else "agent_only"):
            raise HassError(f"the server flow refused {fields}: {shown}")
        done = await self.request("POST", path, json_body={})
        if done["type"] != "create_entry":
            raise HassError(f"the server flow did not create the server: {done}")
        placeholders: dict[str, str] = shown["description_placeholders"]
        return placeholders

    async def subentries(self, entry_id: str) -> list[dict[str, Any]]:
        """The entry's subentries (servers)."""
        found: list[dict[str, Any]] = await self.ws("config_entries/subentries/list", entry_id=entry_id)
        return found

    async def wait_loaded(self, domain: str, within: float = 60) -> dict[str, Any]:
        """Wait until the domain's (first) entry is loaded; raise on a failed state."""

        async def loaded() -> dict[str, Any] | None:
            for entry in await self.entries(domain):
                if entry["state"] == "loaded":
                    return entry
                if entry["state"] in {"setup_error", "migration_error", "failed_unload"}:
                    raise HassError(f"{domain} entry is {entry['state']}: {entry.get('reason')}")
            return None

        result: dict[str, Any] = await poll(loaded, within, f"the {domain} entry to load")
        return result

    # --- states, helpers, automations ----------------------------------------------

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        """An entity's state object, or None if it does not exist."""
        answer: dict[str, Any] = await self.request("GET", f"/api/states/{entity_id}", ok=(200, 404))
        return answer if "state" in answer else None

    async def wait_state(self, entity_id: str, state: str, within: float = 30) -> dict[str, Any]:
        """Wait until the entity has `state`."""

        async def reached() -> dict[str, Any] | None:
            current = await self.state(entity_id)
            return current if current is not None and current["state"] == state else None

        result: dict[str, Any] = await poll(reached, within, f"{entity_id} to be {state}")
        return result

    async def create_input_boolean(self, name: str) -> str:
        """Create an input_boolean helper as Settings > Helpers does; return its entity id."""
        helper = await self.ws("input_boolean/create", name=name)
        entity_id = f"input_boolean.{helper['id']}"
        await poll(lambda: self.state(entity_id), 30, f"{entity_id} to exist")
        return entity_id

    async def create_dashboard(self, url_path: str, title: str, cards: list[dict[str, Any]]) -> str:
        """Create a dashboard as Settings > Dashboards does, with one view; return its path."""
        await self.ws(
            "lovelace/dashboards/create",
            url_path=url_path,
            title=title,
            mode="storage",
            show_in_sidebar=True,
            require_admin=False,
        )
        await self.ws(
            "lovelace/config/save", url_path=url_path, config={"views": [{"title": title, "cards": cards}]}
        )
        return f"/{url_path}/0"

    async def save_automation(self, automation_id: str, config: dict[str, Any]) -> str:
        """Create or replace an automation as the automation editor does; return its entity id."""
        await self.request(
            "POST",
            f"/api/config/automation/config/{automation_id}",
            json_body={"id": automation_id, **config},
        )

        async def entity() -> str | None:
            for state in await self.request("GET", "/api/states"):
                if state["attributes"].get("id") == automation_id and state["entity_id"].startswith(
                    "automation."
                ):
                    return str(state["entity_id"])
            return None

        result: str = await poll(entity, 30, f"automation {automation_id} to load")
        return result


def integration_problems(log: str) -> list[str]:
    """Lines of HA's log where SmartServer misbehaved: its own warnings and errors,
    errors naming it from any logger, and calls that blocked the event loop."""
    record = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) \([^)]*\) \[([^\]]+)\] (.*)$")

    def ours(line: str) -> bool:
        if "Detected blocking call" in line:
            return True
        match = record.match(line)
        return match is not None and (
            match[2].startswith("custom_components.smartserver")
            or (match[1] != "WARNING" and "smartserver" in match[3])
        )

    return [line for line in log.splitlines() if ours(line)]


def agent_settings(placeholders: dict[str, str]) -> dict[str, str]:
    """The agent's settings as the server flow shows them (an env file)."""
    lines = placeholders["agent_settings"].splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


async def set_up(
    api: HassApi,
    owner: Owner,
    broker: Broker,
    base_topic: str = "home",
    report: Callable[[str], None] = lambda _step: None,
) -> Tokens:
    """Bring a started `hass` to a ready SmartServer: owner, MQTT, SmartServer.

    A fresh config folder is onboarded; a set-up one is logged into. Entries that
    exist already are kept, so this is safe to run on every start. `report` gets
    each step with the seconds since the start.
    """
    started = time.monotonic()

    def step(what: str) -> None:
        report(f"{time.monotonic() - started:5.1f} s  {what}")

    await api.wait_http()
    step("HTTP up")
    fresh = not await api.onboarded()
    tokens = await api.onboard(owner) if fresh else await api.login(owner)
    step("onboarded" if fresh else "logged in")
    await api.wait_running()
    step("running")
    removed = await api.remove_onboarding_extras(settle=30 if fresh else 0)
    if removed:
        step(f"removed onboarding's {', '.join(removed)} entries")
    if not await api.entries("mqtt"):
        await api.add_mqtt(broker)
        step("MQTT added through its config flow")
    await api.wait_loaded("mqtt")
    if not await api.entries("smartserver"):
        await api.add_smartserver(base_topic)
        step("SmartServer added through its config flow")
    await api.wait_loaded("smartserver")
    step("MQTT and SmartServer loaded")
    return tokens
