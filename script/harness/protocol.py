"""Load the integration's protocol module without importing Home Assistant.

The agent's and the firmware's tests check their topics against it, on Python 3.11 too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PROTOCOL_PATH = Path(__file__).parents[2] / "custom_components" / "smartserver" / "protocol.py"


def load_protocol() -> ModuleType:
    """Return custom_components/smartserver/protocol.py as a stand-alone module."""
    if (loaded := sys.modules.get("smartserver_protocol")) is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("smartserver_protocol", PROTOCOL_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(PROTOCOL_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["smartserver_protocol"] = module
    spec.loader.exec_module(module)
    return module
