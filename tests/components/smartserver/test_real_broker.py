"""Home Assistant's real MQTT client against the real broker, with the hub loaded."""

from __future__ import annotations

import asyncio

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from script.harness.clients import Peer
from script.harness.mosquitto import Broker


async def test_ha_mqtt_round_trip_over_tls(
    hass: HomeAssistant, mqtt_real: MockConfigEntry, mosquitto: Broker, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.LOADED

    received: asyncio.Queue[mqtt.ReceiveMessage] = asyncio.Queue()
    unsub = await mqtt.async_subscribe(hass, "home/harness/in", received.put_nowait)
    peer = await hass.async_add_executor_job(lambda: Peer(mosquitto).connect())
    try:
        await hass.async_add_executor_job(peer.subscribe, "home/harness/out")
        await mqtt.async_publish(hass, "home/harness/out", "from ha", qos=1)
        msg = await hass.async_add_executor_job(peer.wait_topic, "home/harness/out")
        assert msg.payload == b"from ha"
        # HA debounces SUBSCRIBE for about a second: publish until it lands
        async with asyncio.timeout(10):
            while received.empty():
                await hass.async_add_executor_job(peer.publish, "home/harness/in", b"from peer")
                await asyncio.sleep(0.3)
        assert (await received.get()).payload == "from peer"
    finally:
        unsub()
        await hass.async_add_executor_job(peer.close)
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
