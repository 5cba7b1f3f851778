"""The golden fixtures: stored .npz files that PyTorch or Keras produced (tests/fixtures/make_*.py regenerate them)."""

from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"


def load_npz(path):
    """Every array of the .npz file at ``path``, by name (read eagerly; pickled objects refused)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def fixture_case(name, case):
    """The arrays of one case of the fixture file ``name`` (in FIXTURE_DIR) whose members are named
    ``<case>.<array>``, without the case prefix."""
    data = load_npz(FIXTURE_DIR / name)
    return {k[len(case) + 1:]: v for k, v in data.items() if k.startswith(case + ".")}
