"""The management topics and chunk size the node, the CLI and protocol.py share."""

from __future__ import annotations

from smartserver_node.client import CHUNK, Connection, Node, signature

from tests.harness.protocol import load_protocol

from .board import FIRMWARE, KEY, NODE


def test_cli_topics_and_signature_match_the_protocol_module() -> None:
    protocol = load_protocol()
    node = Node(Connection("127.0.0.1", insecure_plain_mqtt=True), "home", NODE, KEY)  # not connected
    assert node.cmd_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_CMD)
    assert node.data_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_DATA)
    assert node.reply_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_REPLY)
    assert node.info_topic == protocol.node_topic("home", NODE, protocol.NODE_INFO)
    assert node.log_filter == protocol.log_filter("home").replace("+/+", f"+/{NODE}")
    assert CHUNK == protocol.MGMT_CHUNK
    assert f"CHUNK = {protocol.MGMT_CHUNK}" in (FIRMWARE / "mgmt.py").read_text()
    expected = protocol.command_signature(KEY, NODE, "put", 5, "ab", "x\ny")
    assert signature(KEY, NODE, "put", 5, "ab", "x\ny") == expected
