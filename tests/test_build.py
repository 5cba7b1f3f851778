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


def test_memory_cache_reuses_and_releases_blocks():
    import numpy as np
    rng = np.random.default_rng(0)
    T, B, H = 20, 16, 64
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    w_ih, w_hh = (rng.standard_normal((4 * H, H)).astype(np.float32) * 0.1 for _ in range(2))
    rnncore.empty_cache()
    y, _, _, ws = rnncore.ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)
    grads = rnncore.ops.lstm_backward(ws, y)
    del y, ws, grads
    idle = rnncore.memory_stats()["idle_bytes"]
    assert idle >= 4 * T * B * 4 * H, "the workspace's gate buffer should be idle in the cache after use"
    y2, _, _, ws2 = rnncore.ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)
    assert rnncore.memory_stats()["idle_bytes"] < idle, "a second step should take blocks from the cache"
    del y2, ws2
    assert rnncore.empty_cache() > 0 and rnncore.memory_stats()["idle_bytes"] == 0
    try:
        rnncore.set_cache_limit(0)
        out = rnncore.ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)
        del out
        assert rnncore.memory_stats()["idle_bytes"] == 0, "limit 0 keeps nothing"
    finally:
        rnncore.set_cache_limit(2 << 30)
    with pytest.raises(ValueError, match="nbytes"):
        rnncore.set_cache_limit(-1)
