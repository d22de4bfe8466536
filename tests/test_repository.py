"""Stands in for hassfest and the HACS action, which cannot run here."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import struct
import subprocess
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
    spec = importlib.util.spec_from_file_location("translations", REPO / "script" / "translations.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rendered = json.loads((COMPONENT / "translations" / "en.json").read_text())
    # every nested key and text, not only the sections
    assert rendered == script.resolve(STRINGS, STRINGS)
    assert "[%key:" not in json.dumps(rendered)


TREES = {name: ast.parse(source) for name, source in SOURCES.items()}


def _tree(name: str) -> ast.Module:
    return TREES[name]


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _str_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "text" (also annotated: `Final`)."""
    found: dict[str, str] = {}
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            found[target.id] = value.value
    return found


CONSTANTS = _str_constants(_tree("const.py"))
PARENTS = {id(tree): _parents(tree) for tree in TREES.values()}


def _enum_values(tree: ast.Module, name: str) -> set[str] | None:
    """The values of the enum `name`, defined in the module or imported from a sibling."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return set(_str_constants(ast.Module(body=node.body, type_ignores=[])).values())
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 1
            and node.module
            and any(alias.name == name for alias in node.names)
        ):
            return _enum_values(_tree(f"{node.module}.py"), name)
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return CONSTANTS.get(node.id)
    return None


def _values(tree: ast.Module, parents: dict[ast.AST, ast.AST], expr: ast.expr) -> set[str]:
    """What `expr` can be: a literal or const.py constant; a parameter typed with an enum of
    the module; or a parameter of a helper, as the helper's callers pass it."""
    if (text := _literal(expr)) is not None:
        return {text}
    assert isinstance(expr, ast.Name), ast.unparse(expr)
    func = parents[expr]
    while not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
        func = parents[func]
    params = [a for a in func.args.args if a.arg not in {"self", "cls"}]
    param = next(a for a in params if a.arg == expr.id)
    if isinstance(param.annotation, ast.Name) and (values := _enum_values(tree, param.annotation.id)):
        return values
    index = params.index(param)
    found: set[str] = set()
    # a private helper's callers are in its module; a public one's anywhere (helpers.py)
    for caller in [tree] if func.name.startswith("_") else TREES.values():
        for call in ast.walk(caller):
            if isinstance(call, ast.Call) and _call_name(call) == func.name:
                passed = [kw.value for kw in call.keywords if kw.arg == param.arg] or call.args[
                    index : index + 1
                ]
                assert passed, ast.unparse(call)
                found |= _values(caller, PARENTS[id(caller)], passed[0])
    assert found, f"{func.name}({param.arg}) is never called with a literal"
    return found


def _translation_keys() -> dict[str, set[str]]:
    """Every translation key in the code, by the strings.json section it must be in."""
    used: dict[str, set[str]] = {}
    for name in SOURCES:
        tree = _tree(name)
        parents = _parents(tree)
        platform = name.removesuffix(".py")
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    attr = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if attr == "_attr_translation_key" and node.value is not None:
                        used.setdefault(f"entity.{platform}", set()).update(
                            _values(tree, parents, node.value)
                        )
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "translation_key":
                    continue
                called = _call_name(node)
                if called.endswith("Description"):  # entity descriptions
                    section = f"entity.{platform}"
                elif called == "async_create_issue":
                    section = "issues"
                elif called == "SelectSelectorConfig":
                    section = "selector"
                elif called.endswith(("Error", "NotReady", "Failed")):
                    section = "exceptions"
                else:
                    raise AssertionError(f"{name}: translation_key in {called}(): which section?")
                used.setdefault(section, set()).update(_values(tree, parents, keyword.value))
    return used


def _section(path: str) -> dict[str, Any]:
    node: Any = STRINGS
    for part in path.split("."):
        node = node.get(part, {})
    assert isinstance(node, dict)
    return node


def test_every_translation_key_in_the_code_exists() -> None:
    used = _translation_keys()
    # the scan finds each kind: keywords, _attr_translation_key, helpers, enums, selectors
    assert {"firmware"} <= used["entity.update"]
    assert {"link", "agent"} <= used["entity.binary_sensor"]
    assert {"node_no_answer", "publish_failed", "mqtt_not_ready"} <= used["exceptions"]
    assert {"agent_lost", "config_file_error"} <= used["issues"]
    assert used["selector"] == {"event_level", "power_on", "reach_by"}
    missing = {section: sorted(keys - set(_section(section))) for section, keys in used.items()}
    assert {section: keys for section, keys in missing.items() if keys} == {}
    for key in used["selector"]:
        assert STRINGS["selector"][key]["options"]


# HA's default reasons of the flow helpers that abort without one
_HELPER_ABORTS = {
    "async_update_and_abort": "reconfigure_successful",
    "async_update_reload_and_abort": "reconfigure_successful",
    "_abort_if_unique_id_configured": "already_configured",
    "_async_abort_entries_match": "already_configured",
}


def _flow_texts(nodes: list[ast.AST]) -> dict[str, set[str]]:
    """Abort reasons, error keys and form steps the code in `nodes` can show."""
    found: dict[str, set[str]] = {"abort": set(), "error": set(), "step": set()}
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Call):
            called = _call_name(node)
            kwargs = {kw.arg: kw.value for kw in node.keywords}
            if called == "async_abort" or called in _HELPER_ABORTS:
                reason = _literal(kwargs["reason"]) if "reason" in kwargs else _HELPER_ABORTS[called]
                assert reason, ast.unparse(node)
                found["abort"].add(reason)
            elif called == "async_show_form":
                step = _literal(kwargs["step_id"])
                assert step, ast.unparse(node)
                found["step"].add(step)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(target := node.targets[0], ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "errors"
        ):
            key = _literal(node.value)
            assert key, ast.unparse(node)
            found["error"].add(key)
    return found


def _flows() -> dict[str, dict[str, set[str]]]:
    """The texts of each flow class in config_flow.py, by its strings.json section."""
    tree = _tree("config_flow.py")
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    subentries: dict[str, str] = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.FunctionDef) and call.name == "async_get_supported_subentry_types":
            for ret in ast.walk(call):
                if isinstance(ret, ast.Dict):
                    for key, value in zip(ret.keys, ret.values, strict=True):
                        assert key is not None
                        assert isinstance(value, ast.Name)
                        subentry_type = _literal(key)
                        assert subentry_type
                        subentries[value.id] = f"config_subentries.{subentry_type}"
    flows: dict[str, dict[str, set[str]]] = {}
    for name, cls in classes.items():
        bases = {b.id for b in cls.bases if isinstance(b, ast.Name)}
        if "ConfigFlow" in bases:
            section = "config"
        elif bases & {"OptionsFlow", "OptionsFlowWithReload"}:
            section = "options"
        elif "ConfigSubentryFlow" in bases:
            section = subentries[name]
        else:
            continue
        # module-level helpers the class calls (`_check_base(user_input, errors)`) count too
        # (and the helpers those call, `_check_hub` -> `_check_base`)
        used: set[str] = set()
        calls = {_call_name(c) for c in ast.walk(cls) if isinstance(c, ast.Call)} & set(helpers)
        while calls - used:
            used |= calls
            calls = {_call_name(c) for h in used for c in ast.walk(helpers[h]) if isinstance(c, ast.Call)}
            calls = (calls & set(helpers)) | used
        flows[section] = _flow_texts([cls, *(helpers[c] for c in used)])
    return flows


def test_every_flow_text_exists() -> None:
    flows = _flows()
    assert set(flows) == {"config", "options", "config_subentries.server"}
    assert "reconfigure_successful" in flows["config_subentries.server"]["abort"]
    assert "invalid_base_topic" in flows["config"]["error"] & flows["options"]["error"]
    missing = {
        f"{section}.{kind}": sorted(keys - set(_section(f"{section}.{kind}")))
        for section, texts in flows.items()
        for kind, keys in texts.items()
    }
    assert {where: keys for where, keys in missing.items() if keys} == {}


def test_every_repair_flow_abort_exists() -> None:
    aborts = _flow_texts([_tree("repairs.py")])["abort"]
    assert aborts
    fix_flows = [issue["fix_flow"] for issue in STRINGS["issues"].values() if "fix_flow" in issue]
    for fix_flow in fix_flows:
        assert aborts <= set(fix_flow.get("abort", {}))


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


def _host_packages(tmp_path: Path, python3_has_ensurepip: bool) -> str:
    """Run script/bootstrap's host_packages with every command present but maybe ensurepip."""
    script = (REPO / "script" / "bootstrap").read_text()
    function = re.search(r"^host_packages\(\) \{\n.*?^\}\n", script, re.M | re.S)
    assert function
    pairs = re.search(r"for pair in (.*?); do", function.group(0), re.S)
    assert pairs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for pair in pairs.group(1).replace("\\", " ").split():
        stub = bin_dir / pair.split(":")[0]
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    python3 = bin_dir / "python3"
    python3.write_text(f"#!/bin/sh\nexit {0 if python3_has_ensurepip else 1}\n")
    python3.chmod(0o755)
    calls = tmp_path / "as_root"
    calls.touch()
    # the install's output goes to /dev/null: record the commands in a file
    shell = f'{function.group(0)}log() {{ :; }}\nas_root() {{ echo "$*" >>"{calls}"; }}\nhost_packages\n'
    subprocess.run(["/bin/bash", "-c", shell], env={"PATH": str(bin_dir)}, check=True)
    return calls.read_text()


def test_bootstrap_installs_python3_venv_for_ensure_uv(tmp_path: Path) -> None:
    assert "python3 -m venv" in (REPO / "script" / "bootstrap").read_text()
    installed = _host_packages(tmp_path / "without", python3_has_ensurepip=False).splitlines()[-1]
    assert installed.split()[-1:] == ["python3-venv"]
    assert _host_packages(tmp_path / "with", python3_has_ensurepip=True) == ""
    # nothing drives Chromium through chromedriver (script/harness/browser.py speaks DevTools)
    assert "chromium-driver" not in (REPO / "script" / "bootstrap").read_text()


def test_hacs_repository_rules() -> None:
    """What HACS's validation checks in the repository itself (not GitHub's settings)."""
    # GitHub's license detection reads a LICENSE file; pyproject's field is not enough
    license_text = (REPO / "LICENSE").read_text()
    declared = re.search(r'^license = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared
    assert license_text.startswith(f"{declared.group(1)} License\n")
    assert "Permission is hereby granted, free of charge" in license_text
    # exactly one integration, named as its domain, with the keys HACS reads
    assert [p.name for p in (REPO / "custom_components").iterdir() if p.is_dir()] == ["smartserver"]
    assert {"domain", "documentation", "issue_tracker", "codeowners", "name", "version"} <= set(MANIFEST)
    hacs = json.loads((REPO / "hacs.json").read_text())
    if hacs.get("render_readme"):
        assert (REPO / "README.md").is_file()
    # the brand icon HACS and HA 2026 show for a custom integration
    assert (COMPONENT / "brand" / "icon.png").is_file()


def _local_imports(tree: ast.Module) -> set[str]:
    """The integration's modules a module imports (`from . import x`, `from .x import y`)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(f"{node.module.split('.')[0]}.py")
            else:
                found.update(f"{alias.name}.py" for alias in node.names)
    return found & set(SOURCES)


def test_no_import_circles() -> None:
    """Also none under TYPE_CHECKING: each module depends on the ones below it only."""
    imports = {name: _local_imports(tree) for name, tree in TREES.items()}
    circles = []
    for start in imports:
        stack, seen = [(start, [start])], set()
        while stack:
            name, path = stack.pop()
            for imported in imports[name]:
                if imported == start:
                    circles.append(" -> ".join([*path, start]))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, [*path, imported]))
    assert circles == []
