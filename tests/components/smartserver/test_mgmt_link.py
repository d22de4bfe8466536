"""The firmware manager reaches MQTT only through the Link it is given (the coordinator's seam)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from homeassistant.components.mqtt import ReceiveMessage

from custom_components.smartserver import protocol
from custom_components.smartserver.mgmt import FirmwareManager, Handler, Link, NodeFirmware, NodeHandler
from script.harness.ha import NODE_KEY, RELAY_NODE

INFO_FILTER = protocol.node_filter("home", protocol.NODE_INFO)
REPLY = protocol.node_topic("home", RELAY_NODE, protocol.NODE_MGMT_REPLY)


class Recorder:
    """Subscriptions and publications of a Link; relay1 answers every command `ok`."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.published: list[str] = []
        self.link = Link(self.subscribe_nodes, self.subscribe_node, self.publish)

    async def subscribe_nodes(self, leaf: str, handle: NodeHandler) -> Callable[[], None]:
        def message(msg: ReceiveMessage) -> None:
            node = protocol.parse_node_topic("home", msg.topic, leaf)
            assert node is not None
            handle(node, msg)

        return await self.subscribe(protocol.node_filter("home", leaf), message)

    async def subscribe_node(self, node: str, leaf: str, handle: Handler) -> Callable[[], None]:
        return await self.subscribe(protocol.node_topic("home", node, leaf), handle)

    async def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        self.handlers[topic] = handler

        def unsubscribe() -> None:
            del self.handlers[topic]

        return unsubscribe

    async def publish(self, topic: str, payload: bytes | str) -> None:
        self.published.append(topic)
        command = protocol.verify_command(NODE_KEY, RELAY_NODE, payload, time.time(), {})
        self.deliver(REPLY, REPLY, f"{command.nonce} 0 ok\nanswer to {command.cmd}".encode())

    def deliver(self, subscription: str, topic: str, payload: bytes) -> None:
        self.handlers[subscription](ReceiveMessage(topic, payload, 1, False, subscription, time.time()))


async def test_infos_and_commands_go_through_the_link() -> None:
    recorder = Recorder()
    new: list[NodeFirmware] = []
    manager = FirmwareManager(recorder.link, "home", None, {RELAY_NODE: NODE_KEY}, new.append)
    unsubscribe = await manager.start()
    assert list(recorder.handlers) == [INFO_FILTER]

    recorder.deliver(INFO_FILTER, "home/node/node2/info", json.dumps({"version": "0.1.0"}).encode())
    assert new == [manager.nodes["node2"]]
    assert new[0].info is not None
    assert new[0].info.version == "0.1.0"
    assert not new[0].can_install  # HA knows no key for it

    relay = manager.add(RELAY_NODE)
    assert relay.can_install
    await relay.follow_replies()
    assert await relay.command("ls") == b"answer to ls"
    assert recorder.published == [protocol.node_topic("home", RELAY_NODE, protocol.NODE_MGMT_CMD)]
    unsubscribe()
    assert list(recorder.handlers) == [REPLY]
