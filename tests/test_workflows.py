"""The GitHub workflows run what is tested here: the README's test command and script/release."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def _workflow(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _runs(workflow: dict[str, Any]) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def _uses(workflow: dict[str, Any]) -> list[str]:
    return [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]


def test_tests_workflow_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = re.search(r"^(script/\S+)\s+# the test command", readme, re.M)
    assert command
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith(f"exec {command.group(1)}")
    runs = "\n".join(_runs(_workflow("tests.yml")))
    assert re.search(rf"^\s*{re.escape(command.group(1))}\s*$", runs, re.M)


def test_validation_workflows_use_hassfest_and_hacs() -> None:
    assert any(u.startswith("home-assistant/actions/hassfest@") for u in _uses(_workflow("hassfest.yml")))
    hacs = _workflow("hacs.yml")
    steps = [
        s
        for job in hacs["jobs"].values()
        for s in job["steps"]
        if s.get("uses", "").startswith("hacs/action@")
    ]
    assert [s["with"]["category"] for s in steps] == ["integration"]


def test_release_workflow_builds_and_attaches_the_hacs_zip() -> None:
    release = _workflow("release.yml")
    # PyYAML reads the key `on` as True
    triggers: dict[Any, Any] = release
    assert triggers[True]["push"]["tags"] == ["v*"]
    runs = "\n".join(_runs(release))
    assert "script/bootstrap" in runs
    assert re.search(r"script/release --out dist --tag \"\$GITHUB_REF_NAME\"", runs)
    filename = json.loads((REPO / "hacs.json").read_text())["filename"]
    attached = [s["with"]["files"] for job in release["jobs"].values() for s in job["steps"] if "with" in s]
    assert attached == [f"dist/{filename}"]
