"""Fixtures for the firmware tests: a simulated ESP32 and HA's side of the protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from script.harness.board import APP_SIZE, Board, ConfigServer, board_config, secrets_config
from script.harness.clients import Peer
from script.harness.micropython import MicroPython
from script.harness.mosquitto import Broker
from script.harness.ntp import NtpServer


@pytest.fixture
def make_board(
    micropython: MicroPython, mosquitto: Broker, ntp_server: NtpServer, tmp_path: Path
) -> Iterator[Callable[..., Board]]:
    """Create boards (not booted); all are stopped at teardown. `clock` starts a board's
    wall clock there (Unix time, e.g. POWER_UP) instead of the host's; `partitions` the
    partition table ("ota", or "factory": a build without OTA partitions), `app_size`
    the size of its app partitions, `romfs` puts the modules in a ROMFS image (run in
    place, as a build with them frozen does)."""
    boards: list[Board] = []

    def make(
        secrets: dict[str, Any] | None = None,
        heapsize: str | None = None,
        clock: float | None = None,
        partitions: str = "ota",
        app_size: int = APP_SIZE,
        romfs: bool = False,
        **board: Any,
    ) -> Board:
        made = Board(
            micropython,
            tmp_path / f"board{len(boards)}",
            board_config(mosquitto, **board),
            secrets or secrets_config(mosquitto),
            mosquitto.certs.ca_pem,
            heapsize=heapsize,
            clock=clock,
            partitions=partitions,
            app_size=app_size,
            romfs=romfs,
        )
        boards.append(made)
        return made

    yield make
    for made in boards:
        made.stop()


@pytest.fixture
def peer(mosquitto: Broker) -> Iterator[Peer]:
    """HA's side of the broker, subscribed to everything under home/."""
    client = Peer(mosquitto).connect()
    try:
        client.subscribe("home/#")
        yield client
    finally:
        client.close()


@pytest.fixture
def config_server(peer: Peer) -> Callable[[dict[str, Any]], ConfigServer]:
    """Serve a configuration to every node that asks."""
    return lambda components: ConfigServer(peer, components)


@pytest.fixture
def start_board(
    make_board: Callable[..., Board], config_server: Callable[[dict[str, Any]], ConfigServer]
) -> Callable[..., Board]:
    """Boot a board that HA serves an empty configuration; return it once it runs."""
    config_server({})

    def start(inputs: dict[int, int] | None = None, **board: Any) -> Board:
        made = make_board(**board)
        for pin, level in (inputs or {}).items():
            made.set_input(pin, level)
        made.boot()
        made.wait_output("running:")
        made.wait_commands()
        return made

    return start
