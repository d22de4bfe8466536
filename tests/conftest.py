"""Fixtures for every suite: the real broker, system bus and MicroPython."""

pytest_plugins = ["script.harness.plugin"]
