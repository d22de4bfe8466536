"""Power-on methods: Wake-on-LAN sent by HA (checked byte for byte on loopback) or by the node, or none."""

from __future__ import annotations

import socket
import time

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import protocol
from custom_components.smartserver.const import (
    CONF_MAC,
    CONF_POWER_ON,
    CONF_WOL_ADDRESS,
    CONF_WOL_PORT,
)
from script.harness.ha import NODE_KEY, RELAY_NODE, server_hub

from .servers_common import POWER_SET, power_state, published, report, stopped, switch

MAC = "02:00:5E:10:00:01"


@pytest.fixture
def server_config_entry(request: pytest.FixtureRequest, listener: socket.socket) -> MockConfigEntry:
    """The hub with NAS powered on by the method the test names (Wake-on-LAN to the listener)."""
    method = getattr(request, "param", "wol_ha")
    port = listener.getsockname()[1]
    return server_hub(
        **{CONF_POWER_ON: method, CONF_MAC: MAC, CONF_WOL_ADDRESS: "127.0.0.1", CONF_WOL_PORT: port}
    )


@pytest.mark.usefixtures("init_server")
async def test_wol_from_ha(hass: HomeAssistant, mqtt_mock: MqttMockHAClient, listener: socket.socket) -> None:
    await stopped(hass, power=None)
    await switch(hass, "turn_on")
    packet, _sender = listener.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16
    # nothing goes to the node, and the packet alone changes nothing
    assert published(mqtt_mock, POWER_SET) == []
    assert power_state(hass) == "off"
    assert await report(hass, ("home/server/nas/heartbeat", "ALIVE")) == "starting"
    # on (or starting) is never woken again
    await switch(hass, "turn_on")
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.recvfrom(1024)


@pytest.mark.parametrize("server_config_entry", ["wol_node"], indirect=True)
@pytest.mark.usefixtures("init_server")
async def test_wol_from_the_node(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, listener: socket.socket
) -> None:
    await stopped(hass)
    await switch(hass, "turn_on")
    ((_topic, payload, qos, retain),) = published(mqtt_mock, POWER_SET)
    assert (qos, retain) == (1, False)
    command = protocol.verify_command(NODE_KEY, RELAY_NODE, payload, time.time(), {})
    port = listener.getsockname()[1]
    assert (command.cmd, command.arg) == ("WOL", f"{MAC} 127.0.0.1 {port}")
    assert protocol.parse_wol_arg(command.arg) == (bytes.fromhex("02005E100001"), "127.0.0.1", port)
    assert power_state(hass) == "off"


@pytest.mark.parametrize("server_config_entry", ["none"], indirect=True)
@pytest.mark.usefixtures("init_server")
async def test_no_power_on(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    await stopped(hass)
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "no_power_on"
    assert published(mqtt_mock, POWER_SET) == []


@pytest.mark.parametrize("server_config_entry", ["wol_ha"], indirect=True)
@pytest.mark.usefixtures("init_server")
async def test_wol_send_failure(hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch) -> None:
    await stopped(hass)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr("custom_components.smartserver.servers.send_magic_packet", fail)
    with pytest.raises(HomeAssistantError) as err:
        await switch(hass, "turn_on")
    assert err.value.translation_key == "wol_failed"
    assert err.value.translation_placeholders == {"name": "NAS", "error": "Network is unreachable"}


@pytest.mark.parametrize(
    "arg",
    ["", "02:00:5E:10:00", "02:00:5E:10:00:01 1.2.3", "02:00:5E:10:00:01 127.0.0.1 0", "a b c d", "x" * 5000],
)
def test_hostile_wol_args_are_refused(arg: str) -> None:
    with pytest.raises(ValueError, match=r"MAC|IPv4|port"):
        protocol.parse_wol_arg(arg)
