"""The management topics, chunk size and framing the node, the CLI and the integration share."""

from __future__ import annotations

import inspect
from pathlib import Path

from smartserver_node import mgmt_framing as cli_framing
from smartserver_node.client import Connection, Node, signature

from custom_components.smartserver import mgmt_framing
from script.harness import esp_image
from script.harness.board import FIRMWARE, KEY, NODE
from script.harness.protocol import load_protocol


def test_cli_topics_and_signature_match_the_protocol_module() -> None:
    protocol = load_protocol()
    node = Node(Connection("127.0.0.1", insecure_plain_mqtt=True), "home", NODE, KEY)  # not connected
    assert node.cmd_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_CMD)
    assert node.data_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_DATA)
    assert node.reply_topic == protocol.node_topic("home", NODE, protocol.NODE_MGMT_REPLY)
    assert node.info_topic == protocol.node_topic("home", NODE, protocol.NODE_INFO)
    assert node.log_filter == protocol.log_filter("home").replace("+/+", f"+/{NODE}")
    expected = protocol.command_signature(KEY, NODE, "put", 5, "ab", "x\ny")
    assert signature(KEY, NODE, "put", 5, "ab", "x\ny") == expected


def test_the_cli_carries_the_integrations_framing_byte_for_byte() -> None:
    """One framing: the CLI's copy is the integration's file, so they cannot drift."""
    ours, theirs = inspect.getsourcefile(mgmt_framing), inspect.getsourcefile(cli_framing)
    assert ours is not None
    assert theirs is not None
    assert ours != theirs
    assert Path(ours).read_bytes() == Path(theirs).read_bytes()


def test_the_node_takes_chunks_of_the_framings_size() -> None:
    assert f"CHUNK = {mgmt_framing.CHUNK}\n" in (FIRMWARE / "mgmt.py").read_text()
    chunks = mgmt_framing.data_chunks("00ff", b"x" * (2 * mgmt_framing.CHUNK + 1))
    assert [c.split(b"\n", 1)[0] for c in chunks] == [b"00ff 0 more", b"00ff 1 more", b"00ff 2 ok"]
    assert mgmt_framing.data_chunks("00ff", b"") == [b"00ff 0 ok\n"]


def test_app_version_reads_the_descriptor_of_an_app_image_only() -> None:
    image = esp_image.build("v1.25.0", 8192)
    assert mgmt_framing.app_version(image) == "1.25.0"
    assert mgmt_framing.app_version(esp_image.build("1.26.0-preview", 8192)) == "1.26.0-preview"
    assert mgmt_framing.app_version(esp_image.build("vendor-build", 8192)) == "vendor-build"
    # a full flash image starts with the bootloader: an image header, but no descriptor at 32
    bootloader = bytearray(image)
    bootloader[32:36] = bytes(4)
    assert mgmt_framing.app_version(bytes(bootloader)) is None
    assert mgmt_framing.app_version(b"\xff" * 4096) is None  # erased flash / a zip / a text
    assert mgmt_framing.app_version(image[:60]) is None  # cut before the version
    unprintable = bytearray(image)
    unprintable[48:50] = b"v\x07"
    assert mgmt_framing.app_version(bytes(unprintable)) is None
    assert mgmt_framing.app_version(esp_image.build("", 8192)) is None
