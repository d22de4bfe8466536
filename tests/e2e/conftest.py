"""The end-to-end system: real mosquitto, a real `hass` process, headless Chromium.

One broker and one Home Assistant per test module (a start costs ~15-45 s of CPU);
each test gets its own API client. On failure the logs are kept under artifacts/e2e/.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_socket

from script.harness.certs import Certs
from script.harness.hass_process import REPO, HassApi, HassProcess, Owner, Tokens, set_up
from script.harness.mosquitto import Broker

ARTIFACTS = REPO / "artifacts" / "e2e"
FAILED = pytest.StashKey[set[str]]()


@dataclass
class System:
    """What an end-to-end test works with."""

    broker: Broker
    hass: HassProcess
    owner: Owner
    tokens: Tokens
    artifacts: Path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember which modules had a failing test, to keep their logs."""
    report = yield
    if report.failed:
        item.session.stash.setdefault(FAILED, set()).add(item.nodeid.split("::")[0])
    return report


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Every end-to-end test talks to real servers on 127.0.0.1."""


@pytest.fixture(scope="module")
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, broker_certs: Certs
) -> Iterator[System]:
    """The broker on TLS, and `hass` with MQTT and SmartServer added through their flows."""
    # module fixtures run before any test's socket_enabled; loopback only, as for the tests
    pytest_socket.enable_socket()
    name = Path(request.path).stem
    root = tmp_path_factory.mktemp(name)
    broker = Broker(root / "broker", broker_certs)
    hass = HassProcess(root / "config", name="SmartServer e2e")
    owner = Owner("e2e", secrets.token_urlsafe(12))
    artifacts = ARTIFACTS / name
    shutil.rmtree(artifacts, ignore_errors=True)
    ready = False
    try:
        broker.start()
        hass.install_component("release")
        hass.write_configuration()
        hass.start()

        async def prepare() -> Tokens:
            async with HassApi(hass) as api:
                return await set_up(api, owner, broker, report=print)

        tokens = asyncio.run(prepare())
        ready = True
        yield System(broker, hass, owner, tokens, artifacts)
    finally:
        hass.stop()
        broker.stop()
        if not ready or request.node.nodeid in request.session.stash.get(FAILED, set()):
            keep_logs(
                artifacts,
                hass.config_dir / "home-assistant.log",
                hass.config_dir / "hass.out",
                broker.directory / "mosquitto.log",
            )


def keep_logs(artifacts: Path, *logs: Path) -> None:
    """Copy the logs that exist into the artifacts folder."""
    artifacts.mkdir(parents=True, exist_ok=True)
    for log in logs:
        if log.exists():
            shutil.copy(log, artifacts / log.name)


@pytest.fixture
async def api(system: System) -> AsyncIterator[HassApi]:
    """A REST/websocket client logged in as the owner."""
    async with HassApi(system.hass, system.tokens) as client:
        yield client
