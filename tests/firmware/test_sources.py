"""The firmware's topic helpers and version, as the integration and smartserver-node see them."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from smartserver_node.firmware import firmware_version

from script.harness.board import FIRMWARE, firmware_sources, protocol


def firmware_module(name: str) -> ModuleType:
    """A firmware module without MicroPython imports, loaded by CPython."""
    spec = importlib.util.spec_from_file_location(f"firmware_{name}", FIRMWARE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("base", ["home", "lab/east"])
def test_topics_match_the_protocol_module(base: str) -> None:
    topics = firmware_module("topics")
    config = {"base": base, "node_id": "node1"}
    for leaf in ("status", "power", "power/set", "refresh", "info", "mgmt/cmd", "mgmt/reply"):
        assert topics.node_topic(config, leaf) == protocol.node_topic(base, "node1", leaf)
    for level in protocol.LEVELS:
        assert topics.log_topic(config, level) == protocol.log_topic(base, level, "node1")
    assert topics.login_topic(config) == protocol.login_answer(base, "node1")


def test_one_version_read_without_running_the_firmware(tmp_path: Path) -> None:
    assert firmware_version(FIRMWARE) == firmware_module("version").VERSION
    assert firmware_version(firmware_sources(tmp_path / "src", "1.2.3")) == "1.2.3"
    # remote_config.py sends it (node.py takes it from there): imported, not a copy.
    assert "from version import VERSION" in (FIRMWARE / "remote_config.py").read_text()
    broken = tmp_path / "broken"
    shutil.copytree(FIRMWARE, broken)
    (broken / "version.py").write_text("VERSION = compute()\n")
    with pytest.raises(ValueError, match="no VERSION"):
        firmware_version(broken)
