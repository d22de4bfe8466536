"""`smartserver-agent [run]` serves; `smartserver-agent check` reports and exits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from . import __version__, logind, network
from .config import ConfigError, load, store_ca
from .session import INSECURE_WARNING, Agent, probe

_LOGGER = logging.getLogger(__package__)
EXIT_PROBLEM = 1
EXIT_CONFIG = 2


def check(
    config_lines: list[str], problems: list[str], report: network.Report, answers: dict[str, str]
) -> None:
    """Print the report of `smartserver-agent check`; `answers`: logind's, by method."""
    print("configuration: ok")
    for line in config_lines:
        print(f"  {line}")
    for method, answer in answers.items():
        print(f"logind {method}: {answer}")
    for line in report.lines():
        print(line)
    if problems:
        print(f"result: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("result: ok")


def ask_logind(problems: list[str]) -> dict[str, str]:
    """Return logind's answers to CanPowerOff and CanReboot; note each problem."""
    actions = (logind.POWER_OFF, logind.REBOOT)
    try:
        answers = asyncio.run(logind.can(*actions))
    except logind.LogindError as err:
        problems.append(f"logind: {err}")
        return {action.check: f"unknown ({err})" for action in actions}
    for method, answer in answers.items():
        if answer != "yes":
            problems.append(f"logind {method} answered {answer!r}: install the polkit rule (docs/agent.md)")
    return answers


def run_check(env_file: Path | None) -> int:
    """Validate configuration, broker, logind and network; exit non-zero on a problem."""
    config = load(env_file=env_file)
    store_ca(config)
    problems: list[str] = []
    if config.tls_insecure:
        problems.append("TLS certificate verification is off (SMARTSERVER_TLS_INSECURE)")
    if broker := probe(config):
        problems.append(broker)
    answers = ask_logind(problems)
    report = network.check(config.target, config.interfaces)
    problems += [f"network: {problem}" for problem in report.problems]
    check(config.summary(), problems, report, answers)
    return EXIT_PROBLEM if problems else 0


def run(env_file: Path | None) -> int:
    """Serve until stopped."""
    config = load(env_file=env_file)
    store_ca(config)
    logging.getLogger().setLevel(config.log_level.upper())
    if config.tls_insecure:
        _LOGGER.warning(INSECURE_WARNING)
    _LOGGER.info("smartserver-agent %s for server %s", __version__, config.server_id)
    return asyncio.run(Agent(config).run())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="smartserver-agent", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("run", "check"), default="run")
    parser.add_argument("--env-file", type=Path, help="read settings from this KEY=VALUE file first")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        return run_check(args.env_file) if args.command == "check" else run(args.env_file)
    except ConfigError as err:
        print("smartserver-agent: the configuration has problems:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
