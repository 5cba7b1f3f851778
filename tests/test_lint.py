"""Lint and types as part of the suite: ruff's checks (pyproject.toml [tool.ruff]) and mypy on the package
(pyproject.toml [tool.mypy]), each run in its own process from the repository root; a finding fails the test with
the tool's report. (Only `ruff check`: the code is not ruff-formatted, so `ruff format --check` is not run.)"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(tool, *args):
    """Runs ``python -m <tool> <args>`` from the repository root; returns (exit code, everything it printed)."""
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: pip install '.[test]' installs it")
    proc = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_ruff_is_clean_on_tests_and_bench():
    code, report = run_tool("ruff", "check", "tests", "bench")
    assert code == 0, f"ruff check tests bench:\n{report}"


def test_ruff_is_clean_on_the_package():
    code, report = run_tool("ruff", "check", "python/rnncore")
    assert code == 0, f"ruff check python/rnncore:\n{report}"


def test_mypy_is_clean_on_the_package():
    code, report = run_tool("mypy")  # the files and the strictness come from pyproject.toml [tool.mypy]
    assert code == 0, f"mypy:\n{report}"
