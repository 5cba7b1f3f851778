"""pytest configuration: the markers, the hypothesis profiles and the fixtures every test file may ask for.

Helpers that test files import (the tolerance table, the cell cases, ...) live in the ``support`` package.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: no deadline (shared, noisy machines), a fixed example budget, derandomized so a failure reproduces.
settings.register_profile(
    "default", deadline=None, max_examples=40, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz", deadline=None, max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("RNNCORE_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: long randomized runs (opt-in: pytest -m fuzz)")
    config.addinivalue_line("markers", "slow: tests that take more than a few seconds (opt-in: pytest -m slow)")


@pytest.fixture
def rng():
    """A seeded generator: every random test input reproduces."""
    return np.random.default_rng(20261127)


@pytest.fixture(params=[1, 2], ids=["1_kernel_thread", "2_kernel_threads"])
def kernel_threads(request):
    """The number of threads inside each kernel call (rnncore.set_num_threads), restored afterwards."""
    import rnncore

    before = rnncore.get_num_threads()
    rnncore.set_num_threads(request.param)
    yield request.param
    rnncore.set_num_threads(before)
