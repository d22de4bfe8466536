"""Run a Home Assistant benchmark module under a fresh pytest.

Home Assistant's test plugin must load before Home Assistant itself, which a fresh
`python -m pytest` ensures; command-line figures are passed on as BENCH_* variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_under_pytest(module: str, names: tuple[str, ...], *pytest_args: str) -> int:
    """Run benchmarks/<module> with sys.argv[1:] mapped onto the variables `names`."""
    env = dict(os.environ)
    for name, value in zip(names, sys.argv[1:], strict=False):
        env[name] = str(int(value))
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pytest", f"benchmarks/{module}", "-q", "-s"]
    command += ["-p", "script.harness.plugin", "-p", "no:logging", *pytest_args]
    return subprocess.run(command, cwd=root, env=env, check=False).returncode
