"""Runtime state shared by the SmartServer platforms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry

from . import protocol
from .const import CONF_BASE_TOPIC
from .servers import ServerHub

if TYPE_CHECKING:
    from .nodes import NodeHub


@dataclass(slots=True)
class SmartServerData:
    """What one hub entry holds while it is loaded."""

    base_topic: str
    # Homelab servers (servers.py), set up by async_setup_servers
    servers: ServerHub | None = None
    # ESP32 nodes: config serving and logs (set by nodes.async_setup_nodes)
    nodes: NodeHub = field(init=False)

    @classmethod
    def from_entry(cls, entry: ConfigEntry[SmartServerData]) -> SmartServerData:
        """Build the runtime data from the entry's options."""
        base = entry.options.get(CONF_BASE_TOPIC, entry.data.get(CONF_BASE_TOPIC))
        return cls(base_topic=protocol.validate_base(base or protocol.DEFAULT_BASE))


type SmartServerConfigEntry = ConfigEntry[SmartServerData]
