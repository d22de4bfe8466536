"""The rules hassfest applies to strings.json and translations (hassfest cannot run here).

Written from hassfest's published translation rules: no HTML-like text, placeholders that
are identifiers and never in single quotes, no combined references, no surrounding spaces,
no URLs (they go in description placeholders), translation keys in [a-z0-9-_], an issue has
a description or a fix flow but not both, a data_description names a field of its step.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).parents[1]
COMPONENT = REPO / "custom_components" / "smartserver"
FILES = [COMPONENT / "strings.json", COMPONENT / "translations" / "en.json"]

KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
# homeassistant.helpers.config_validation.string_with_no_html: what the frontend reads as a tag
HTML = re.compile(r"<[a-z].*?>", re.I)
REFERENCE = re.compile(r"\[%key:(.+)%\]")
COMBINED = re.compile(r"(.+\[%)|(%\].+)")
QUOTED_PLACEHOLDER = re.compile(r"'{\w+}'")
URL = re.compile(
    r"(((ftp|ftps|scp|http|https|mqtt|mqtts|socket|socks5):\/\/|www\.)"
    r"[a-z0-9]+([\-\.]{1}[a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?(\/.*)?)",
    re.I,
)
FLOW_STEP_KEYS = {"title", "description", "data", "data_description", "menu_options", "submit", "sections"}
FLOW_KEYS = {"flow_title", "step", "error", "abort", "progress", "create_entry", "initiate_flow"}
# sections whose leaves are plain names (hassfest takes `str` there, not the value rules)
PLAIN_NAMES = re.compile(r"^(services\.[^.]+\.fields\.[^.]+\.name)$")


def value_problems(text: Any, *, placeholders: bool = True) -> list[str]:
    """What hassfest would say about one translated text (empty: accepted)."""
    if not isinstance(text, str):
        return ["not a string"]
    problems = []
    if HTML.search(text):
        problems.append("HTML-like text")
    if QUOTED_PLACEHOLDER.search(text):
        problems.append("placeholder in single quotes")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field]
    except ValueError as err:
        fields = []
        problems.append(f"unparsable placeholders: {err}")
    if fields and not placeholders:
        problems.append("placeholders are not allowed here")
    problems += [f"placeholder {f!r} is not an identifier" for f in fields if not f.isidentifier()]
    if COMBINED.search(text):
        problems.append("combined reference")
    if text != text.strip():
        problems.append("leading or trailing spaces")
    if URL.search(text):
        problems.append("URL (use a description placeholder)")
    return problems


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, text) below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path, node


def flow_problems(flow: dict[str, Any], where: str, *, subentry: bool = False) -> list[str]:
    problems = [f"{where}.{key}: unknown key" for key in set(flow) - FLOW_KEYS - {"entry_type"}]
    if subentry:
        problems += [f"{where}: needs {key}" for key in ("entry_type", "initiate_flow") if key not in flow]
    if "initiate_flow" in flow and "user" not in flow["initiate_flow"]:
        problems.append(f"{where}.initiate_flow: needs user")
    for step_id, step in flow.get("step", {}).items():
        problems += [f"{where}.step.{step_id}.{key}: unknown key" for key in set(step) - FLOW_STEP_KEYS]
        for key in set(step.get("data_description", {})) - set(step.get("data", {})):
            problems.append(f"{where}.step.{step_id}.data_description.{key}: not a field of the step")
    return problems


def structure_problems(strings: dict[str, Any]) -> list[str]:
    """hassfest's rules about keys and which keys go together."""
    problems = []
    for section in ("config", "options"):
        if section in strings:
            problems += flow_problems(strings[section], section)
    for name, flow in strings.get("config_subentries", {}).items():
        problems += flow_problems(flow, f"config_subentries.{name}", subentry=True)
    for issue_id, issue in strings.get("issues", {}).items():
        if "title" not in issue:
            problems.append(f"issues.{issue_id}: needs a title")
        fixable = {"description", "fix_flow"} & set(issue)
        if len(fixable) != 1:
            problems.append(f"issues.{issue_id}: needs exactly one of description and fix_flow")
        if "fix_flow" in issue:
            problems += flow_problems(issue["fix_flow"], f"issues.{issue_id}.fix_flow")
    for platform, entities in strings.get("entity", {}).items():
        for key in entities:
            if not KEY.match(key):
                problems.append(f"entity.{platform}.{key}: not a translation key")
    for section in ("services", "exceptions", "selector"):
        for key in strings.get(section, {}):
            if section != "selector" and not KEY.match(key):
                problems.append(f"{section}.{key}: not a translation key")
    return problems


def text_problems(strings: dict[str, Any]) -> list[str]:
    problems = []
    for path, text in leaves(strings):
        if PLAIN_NAMES.match(path):
            continue
        # entity states and units take no placeholders
        no_placeholders = path.startswith("entity.") and (
            ".state." in path or path.endswith("unit_of_measurement")
        )
        problems += [f"{path}: {p}" for p in value_problems(text, placeholders=not no_placeholders)]
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_strings_pass_hassfest_rules(path: Path) -> None:
    strings = json.loads(path.read_text())
    assert structure_problems(strings) + text_problems(strings) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("for example `home/login/<node>/set`", "HTML-like text"),
        ("named '{name}'", "placeholder in single quotes"),
        ("see https://example.org/docs", "URL (use a description placeholder)"),
        (" padded", "leading or trailing spaces"),
        ("{not an id}", "placeholder 'not an id' is not an identifier"),
        ("before [%key:common::x%]", "combined reference"),
    ],
)
def test_rules_catch_what_hassfest_rejects(text: str, problem: str) -> None:
    assert problem in value_problems(text)


def test_rules_accept_plain_text() -> None:
    assert value_problems("Topic `home/login/NODE/set` for {name}, 5 < 6") == []
    assert value_problems("[%key:common::config_flow::abort::already_configured_device%]") == []


def test_issue_with_description_and_fix_flow_is_rejected() -> None:
    issue = {"title": "t", "description": "d", "fix_flow": {"step": {"confirm": {"title": "c"}}}}
    assert structure_problems({"issues": {"x": issue}}) == [
        "issues.x: needs exactly one of description and fix_flow"
    ]
    assert structure_problems({"config": {"step": {"user": {"data_description": {"a": "b"}}}}}) == [
        "config.step.user.data_description.a: not a field of the step"
    ]
