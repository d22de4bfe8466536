"""Write translations/en.json from strings.json, resolving [%key:...%] references.

Home Assistant resolves these references only for core integrations; a custom
integration must ship them resolved. Run: python script/translations.py [--check]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

COMPONENT = Path(__file__).resolve().parent.parent / "custom_components" / "smartserver"
REFERENCE = re.compile(r"\[%key:component::smartserver::([a-z0-9_:]+)%\]")


def _lookup(strings: dict[str, Any], path: str) -> str:
    node: Any = strings
    for part in path.split("::"):
        node = node[part]
    if not isinstance(node, str):
        raise KeyError(path)
    return node


def resolve(strings: dict[str, Any], node: Any) -> Any:
    """Return `node` with every reference replaced by the text it names."""
    if isinstance(node, dict):
        return {key: resolve(strings, value) for key, value in node.items()}
    if isinstance(node, str):
        return REFERENCE.sub(lambda m: resolve(strings, _lookup(strings, m.group(1))), node)
    return node


def render() -> str:
    """The text translations/en.json must have."""
    strings = json.loads((COMPONENT / "strings.json").read_text())
    return json.dumps(resolve(strings, strings), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write en.json, or with --check fail if it is out of date."""
    target = COMPONENT / "translations" / "en.json"
    text = render()
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            print("translations/en.json is out of date: run python script/translations.py")
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
