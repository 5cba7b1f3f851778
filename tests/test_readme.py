"""The README's Python examples run as written (the README is the first thing a user copies from)."""

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert EXAMPLES, "README.md should show at least one Python example"


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    """Run as a user's script would: as a module of its own, in an empty working directory (examples may write
    files)."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, "readme_example", module)
    exec(compile(code, str(README), "exec"), module.__dict__)
