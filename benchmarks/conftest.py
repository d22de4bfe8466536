"""The benchmarks reuse the integration tests' fixtures (loaded after HA's test plugin)."""

from tests.components.smartserver.conftest import (  # noqa: F401
    auto_enable_custom_integrations,
    mqtt_real,
    server_config_entry,
)
