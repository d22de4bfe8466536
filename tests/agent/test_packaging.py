"""What ships next to the agent: the systemd unit, the polkit rule, the example settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from script.harness.agent import AGENT_SOURCE
from smartserver_agent.config import ENV_FILE, SETTINGS, read_env_file

PACKAGING = AGENT_SOURCE / "packaging"
UNIT = PACKAGING / "smartserver-agent.service"
RULE = PACKAGING / "50-smartserver-agent.rules"
EXAMPLE = PACKAGING / "agent.env.example"
DOC = AGENT_SOURCE.parents[1] / "docs" / "agent.md"

# polkit evaluates rules in its JavaScript engine; node runs the same ES5 code
POLKIT = """
const fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin", NOT_HANDLED: null},
                addRule: (rule) => rules.push(rule)};
eval(fs.readFileSync(process.argv[1], "utf8"));
const answers = JSON.parse(process.argv[2]).map(([user, id]) => {
  for (const rule of rules) {
    const result = rule({id: id}, {user: user});
    if (result !== null && result !== undefined) return result;
  }
  return null;
});
console.log(JSON.stringify(answers));
"""


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_as_dedicated_user_hardened() -> None:
    unit = unit_settings()
    assert unit["User"] == ["smartserver-agent"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["StateDirectory"] == ["smartserver-agent"]
    assert unit["StateDirectoryMode"] == ["0700"]
    assert unit["EnvironmentFile"] == ["/etc/smartserver-agent/agent.env"]
    # what it must keep: the network, the system bus
    assert "PrivateNetwork" not in unit
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of systemd on every Debian server"
    unit = tmp_path / UNIT.name
    # the real ExecStart is where docs/agent.md installs the agent
    exec_start = f"ExecStart={sys.executable} -m smartserver_agent"
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", exec_start, UNIT.read_text()))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize(
    ("user", "action", "answer"),
    [
        ("smartserver-agent", "org.freedesktop.login1.power-off", "yes"),
        ("smartserver-agent", "org.freedesktop.login1.power-off-multiple-sessions", "yes"),
        ("smartserver-agent", "org.freedesktop.login1.power-off-ignore-inhibit", None),
        ("smartserver-agent", "org.freedesktop.login1.reboot", "yes"),
        ("smartserver-agent", "org.freedesktop.login1.reboot-multiple-sessions", "yes"),
        ("smartserver-agent", "org.freedesktop.login1.reboot-ignore-inhibit", None),
        ("smartserver-agent", "org.freedesktop.login1.halt", None),
        ("smartserver-agent", "org.freedesktop.login1.suspend", None),
        ("www-data", "org.freedesktop.login1.power-off", None),
        ("root", "org.freedesktop.login1.power-off", None),
        ("www-data", "org.freedesktop.login1.reboot", None),
    ],
)
def test_polkit_rule(user: str, action: str, answer: str | None) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "node runs the polkit rule: script/bootstrap installs it"
    result = subprocess.run(
        [node, "-e", POLKIT, str(RULE), json.dumps([[user, action]])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [answer]


def test_polkit_rule_names_the_unit_user() -> None:
    assert f'subject.user === "{unit_settings()["User"][0]}"' in RULE.read_text()


def test_example_settings_parse_and_cover_every_setting() -> None:
    values, problems = read_env_file(EXAMPLE)
    assert problems == []
    assert values["SMARTSERVER_SERVER_ID"] == "nas"
    documented = {
        line.lstrip("#").split("=", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if line.lstrip("#").startswith("SMARTSERVER_")
    }
    assert documented == set(SETTINGS) - {ENV_FILE, "SMARTSERVER_DATA_DIR"}


def test_docs_name_every_setting() -> None:
    doc = DOC.read_text()
    for name in SETTINGS:
        assert f"`{name}`" in doc, name
    assert "smartserver-agent check" in doc
    assert "50-smartserver-agent.rules" in doc
    assert "smartserver-agent.service" in doc
