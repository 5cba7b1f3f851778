"""What the build promises: version, build facts, the thread setting, and the CPU guard at import."""

import os

import pytest

import rnncore
from rnncore import _build_config, _core


def test_version_and_build_facts():
    assert rnncore.__version__.count(".") == 2
    assert "Eigen 3.4" in _core.build_info()
    if "avx2" in _build_config.REQUIRED_CPU_FLAGS:  # the SIMD the build asked for is what Eigen compiled
        assert "AVX2" in _core.simd_instruction_sets() and "FMA" in _core.simd_instruction_sets()


def test_set_num_threads_round_trips():
    before = rnncore.get_num_threads()
    try:
        rnncore.set_num_threads(1)
        assert rnncore.get_num_threads() == 1
        if _core.has_openmp():
            rnncore.set_num_threads(2)
            assert rnncore.get_num_threads() == 2
    finally:
        rnncore.set_num_threads(before)


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="the guard reads /proc/cpuinfo (Linux)")
def test_import_refuses_kernels_built_for_missing_cpu_flags(monkeypatch):
    monkeypatch.setattr(_build_config, "REQUIRED_CPU_FLAGS", ("avx2", "no_such_cpu_flag"))
    with pytest.raises(ImportError, match="no_such_cpu_flag.*RNNCORE_SIMD"):
        rnncore._check_cpu()
    monkeypatch.setattr(_build_config, "REQUIRED_CPU_FLAGS", ())
    rnncore._check_cpu()  # nothing required: no error
