"""The benchmarks reuse the integration tests' fixtures (loaded after HA's test plugin)."""

import os
from collections.abc import Callable

import pytest

from script.harness.ha import (  # noqa: F401
    auto_enable_custom_integrations,
    hass_config_dir,
    mqtt_real,
    server_config_entry,
)
from script.harness.mosquitto import Broker


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """The broker; BENCH_BROKER_NODELAY=1 turns Nagle off on mosquitto's sockets."""
    nodelay = os.environ.get("BENCH_BROKER_NODELAY") == "1"
    return mosquitto_factory("set_tcp_nodelay true" if nodelay else "")
