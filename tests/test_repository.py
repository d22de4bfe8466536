"""Stands in for hassfest and the HACS action, which cannot run here."""

from __future__ import annotations

import ast
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).parents[1]
COMPONENT = REPO / "custom_components" / "smartserver"
MANIFEST = json.loads((COMPONENT / "manifest.json").read_text())
STRINGS = json.loads((COMPONENT / "strings.json").read_text())
SOURCES = {path.name: path.read_text() for path in COMPONENT.glob("*.py")}


def test_manifest_keys_and_order() -> None:
    keys = list(MANIFEST)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    required = {"codeowners", "config_flow", "dependencies", "documentation", "integration_type"}
    assert required | {"iot_class", "issue_tracker", "requirements", "version"} <= set(keys)
    assert MANIFEST["domain"] == "smartserver" == COMPONENT.name
    assert MANIFEST["dependencies"] == ["mqtt"]
    assert MANIFEST["iot_class"] == "local_push"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["version"])
    for requirement in MANIFEST["requirements"]:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.]*", requirement), requirement


def test_manifest_requirements_pinned_for_tests() -> None:
    pinned = (REPO / "requirements_test.txt").read_text().lower().split()
    for requirement in MANIFEST["requirements"]:
        assert requirement.lower() in pinned


def test_hacs_json() -> None:
    hacs = json.loads((REPO / "hacs.json").read_text())
    assert set(hacs) <= {"name", "homeassistant", "render_readme", "zip_release", "filename", "hacs"}
    assert hacs["name"] == MANIFEST["name"]
    assert re.fullmatch(r"20\d\d\.\d+\.\d+", hacs["homeassistant"])
    if hacs.get("zip_release"):
        assert hacs["filename"].endswith(".zip")


def test_brand_icon_is_a_square_png() -> None:
    data = (COMPONENT / "brand" / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height == 256


def test_translations_match_strings() -> None:
    rendered = json.loads((COMPONENT / "translations" / "en.json").read_text())
    assert set(rendered) == set(STRINGS)
    assert "[%key:" not in json.dumps(rendered)


def _literal_keywords(keyword: str) -> set[str]:
    found: set[str] = set()
    for source in SOURCES.values():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.keyword) and node.arg == keyword:
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
    return found


def test_every_translation_key_in_the_code_exists() -> None:
    known = set(STRINGS["exceptions"]) | set(STRINGS.get("issues", {}))
    for platform in STRINGS.get("entity", {}).values():
        known |= set(platform)
    used = _literal_keywords("translation_key")
    assert used, "no translation keys found: the scan is broken"
    assert used <= known, f"missing in strings.json: {sorted(used - known)}"


@pytest.mark.parametrize("section", ["exceptions", "issues"])
def test_every_message_is_used(section: str) -> None:
    code = "\n".join(SOURCES.values())
    unused = [key for key in STRINGS.get(section, {}) if f'"{key}"' not in code and f"'{key}'" not in code]
    assert not unused, f"{section} never raised: {unused}"


def _steps(node: Any) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "data" in node and isinstance(node["data"], dict):
            steps.append(node)
        for value in node.values():
            steps += _steps(value)
    return steps


def test_every_field_has_a_description() -> None:
    steps = _steps({k: STRINGS[k] for k in ("config", "options", "config_subentries") if k in STRINGS})
    assert steps
    for step in steps:
        missing = set(step["data"]) - set(step.get("data_description", {}))
        assert not missing, f"fields without data_description: {sorted(missing)}"


def test_actions_documented() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    for action, spec in services.items():
        text = STRINGS["services"][action]
        assert text["name"]
        assert text["description"]
        assert set(spec.get("fields", {})) == set(text.get("fields", {}))
        assert f'"{action}"' in "\n".join(SOURCES.values()) or action.upper() in "\n".join(SOURCES.values())


def test_quality_scale_is_complete() -> None:
    rules = yaml.safe_load((COMPONENT / "quality_scale.yaml").read_text())["rules"]
    for name, rule in rules.items():
        status = rule if isinstance(rule, str) else rule["status"]
        assert status in {"done", "todo", "exempt"}, name
        if status == "exempt":
            assert rule["comment"], f"{name}: an exemption needs a reason"
    assert {"config-flow", "runtime-data", "strict-typing", "diagnostics"} <= set(rules)


def test_icons_cover_entities() -> None:
    icons = json.loads((COMPONENT / "icons.json").read_text())
    for platform, keys in icons.get("entity", {}).items():
        assert set(keys) <= set(STRINGS["entity"].get(platform, {})), platform


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_documentation_links_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in _anchors(linked.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    # every page in docs/ is reachable from the README
    readme = (REPO / "README.md").read_text()
    assert [p.name for p in pages[1:] if f"docs/{p.name}" not in readme] == []
