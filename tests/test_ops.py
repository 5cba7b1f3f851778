"""The C++ kernels against the NumPy reference: forward outputs and every gradient, over hypothesis-drawn shapes
(T, B, I, H down to 1), both dtypes, with and without per-sample lengths and biases."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnncore
from rnncore import reference

from support.arrays import DTYPES
from support.cells import CELL_IDS, CELLS, make_inputs, run_backward, run_forward
from support.tolerances import assert_close


def check_against_reference(cell, T, B, I, H, dtype, seed, lengths, bias, kind="kernel_vs_reference"):
    rng = np.random.default_rng(seed)
    inputs, upstream = make_inputs(rng, cell, T, B, I, H, dtype, bias=bias, lengths=lengths)
    got, ws = run_forward(rnncore.ops, cell, inputs)
    want, cache = run_forward(reference, cell, inputs)
    where = f"{cell.name} T={T} B={B} I={I} H={H} {np.dtype(dtype).name} lengths={inputs['lengths']} bias={bias}"
    for name in cell.output_names:
        assert got[name].dtype == dtype and got[name].shape == want[name].shape, name
        assert_close(got[name], want[name], kind, dtype, f"{where}: {name}")

    dgot = run_backward(rnncore.ops, cell, ws, upstream)
    dwant = run_backward(reference, cell, cache, upstream)
    for name in cell.gradient_names:
        if dwant[name] is None:
            assert dgot[name] is None, f"{where}: {name} should be None (no bias)"
            continue
        assert dgot[name].dtype == dtype and dgot[name].shape == dwant[name].shape, name
        assert_close(dgot[name], dwant[name], kind, dtype, f"{where}: {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@given(T=st.integers(1, 12), B=st.integers(1, 6), I=st.integers(1, 9), H=st.integers(1, 12),
       seed=st.integers(0, 2**32 - 1), lengths=st.booleans(), bias=st.booleans())
def test_kernel_matches_reference(cell, dtype, T, B, I, H, seed, lengths, bias):
    check_against_reference(cell, T, B, I, H, dtype, seed, lengths, bias)


# The degenerate sizes every kernel must get right, run explicitly (not left to the draw).
CORNERS = [(1, 1, 1, 1), (1, 3, 2, 4), (5, 1, 1, 1), (4, 2, 1, 3), (3, 4, 5, 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T,B,I,H", CORNERS)
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_kernel_matches_reference_at_corners(cell, dtype, T, B, I, H, lengths):
    check_against_reference(cell, T, B, I, H, dtype, seed=T * 1000 + B * 100 + I * 10 + H, lengths=lengths,
                            bias=True)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_larger_sizes_match_reference(cell):
    """Sizes past Eigen's small-matrix paths (GEMM blocking, several packets per row)."""
    check_against_reference(cell, T=7, B=19, I=37, H=70, dtype=np.float32, seed=7, lengths=True, bias=True)
    check_against_reference(cell, T=6, B=17, I=33, H=65, dtype=np.float64, seed=8, lengths=False, bias=True)


# Shapes that cross the block edges of the float GEMMs of AVX-512 builds (cpp/src/linalg/tile_gemm.hpp: K slices of 384,
# column blocks of 480, row blocks of 1536 rows, 48-column panels, 8-row panels, and the per-step products' orders);
# other builds run them on Eigen's GEMM, which these shapes test as well. T*B = rows of the input projection and dx,
# K of the weight gradients.
GEMM_EDGE_SHAPES = [
    # 1700 rows (two row blocks on 1 thread); I = 410: two K slices of the input projection and a 26-column (2-packet)
    # remainder in dx and dW_ih; G*H up to 520: two column blocks and two K slices of dx; B = 17: a partial batch
    # panel in every step's product.
    dict(T=100, B=17, I=410, H=130),
    # 3200 rows (two row blocks per thread on 2 threads); I = 512: two column blocks of dx and dW_ih (288 + 224) and
    # full 2-packet panels; G*H = 256 / 192 / 64: full 1-packet panels (LSTM, RNN) and none (GRU).
    dict(T=200, B=16, I=512, H=64),
    # The per-step products' weight-outer order (cpp/src/linalg/tile_product.hpp: a weight that does not fit in half
    # of L2 per thread, W_hh 2.1-8.5 MB): B = 12, a full and a partial 8-row batch panel, the second prefetching part of
    # the next weight panel; H = 730: a last 10-column panel in backward's dh = dG · W_hh and in the RNN's forward.
    dict(T=4, B=12, I=8, H=730),
]


@pytest.mark.parametrize("shape", GEMM_EDGE_SHAPES, ids=lambda s: "T{T}-B{B}-I{I}-H{H}".format(**s))
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_sizes_past_the_gemm_blocks_match_reference(cell, shape, kernel_threads):
    """Forward and every gradient against the reference at GEMM_EDGE_SHAPES, on 1 and 2 kernel threads (the GEMMs
    split rows between threads)."""
    check_against_reference(cell, **shape, dtype=np.float32, seed=11, lengths=True, bias=True, kind="long_sums")


# One sample row (float32 with H a multiple of the SIMD packet: the recurrent product packed by units, each unit's
# update run on the product's registers, cpp/src/cells/*.hpp): H = 48 gives 3 unit packets of 16 on AVX-512, i.e.
# panels of 8 + 4 packets (LSTM), 6 + 3 (GRU reset_after), 6 and 3 (GRU reset_before's two products), 3 (simple
# RNN); T >= 8 packs the weight. Drawn lengths leave the row's last steps padded. (Products this small run on one
# thread; test_threads.py's B1 case splits a one-row product across two.)
BATCH1_SHAPES = [dict(T=12, B=1, I=5, H=48), dict(T=9, B=1, I=3, H=16)]


@pytest.mark.parametrize("shape", BATCH1_SHAPES, ids=lambda s: "T{T}-B{B}-I{I}-H{H}".format(**s))
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_one_row_matches_reference(cell, shape):
    """Forward and every gradient of a one-row batch against the reference."""
    for seed in (5, 6):
        check_against_reference(cell, **shape, dtype=np.float32, seed=seed, lengths=seed == 6, bias=True)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_inference_mode_matches_training_mode(cell):
    rng = np.random.default_rng(3)
    inputs, _ = make_inputs(rng, cell, 6, 4, 3, 5, np.float32, lengths=True)
    trained, ws = run_forward(rnncore.ops, cell, inputs, training=True)
    inferred, no_ws = run_forward(rnncore.ops, cell, inputs, training=False)
    assert ws is not None and no_ws is None
    for name in cell.output_names:
        np.testing.assert_array_equal(inferred[name], trained[name], err_msg=name)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_lengths_equal_running_each_sample_alone(cell):
    """A padded batch gives, per sample, what that sample's own unpadded sequence gives (forward and gradients)."""
    rng = np.random.default_rng(11)
    inputs, upstream = make_inputs(rng, cell, 6, 3, 4, 5, np.float64, lengths=True)
    inputs["lengths"] = np.array([6, 2, 4])
    batch, ws = run_forward(rnncore.ops, cell, inputs)
    grads = run_backward(rnncore.ops, cell, ws, upstream)
    for b, n in enumerate(inputs["lengths"]):
        alone_in = dict(inputs, x=inputs["x"][:n, b:b + 1], lengths=None,
                        **{s: inputs[s][b:b + 1] for s in cell.state_names})
        alone_up = dict(upstream, dy=upstream["dy"][:n, b:b + 1],
                        **{k: upstream[k][b:b + 1] for k in upstream if k != "dy"})
        alone, ws_b = run_forward(rnncore.ops, cell, alone_in)
        alone_grads = run_backward(rnncore.ops, cell, ws_b, alone_up)
        np.testing.assert_allclose(batch["y"][:n, b], alone["y"][:, 0], rtol=1e-12, atol=1e-14)
        assert not batch["y"][n:, b].any(), "padded steps must give y = 0"
        np.testing.assert_allclose(batch["h_n"][b], alone["h_n"][0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads["dx"][:n, b], alone_grads["dx"][:, 0], rtol=1e-12, atol=1e-14)
        assert not grads["dx"][n:, b].any(), "padded steps must get no gradient"
        np.testing.assert_allclose(grads["dh0"][b], alone_grads["dh0"][0], rtol=1e-12, atol=1e-14)


@pytest.mark.fuzz
@settings(max_examples=300)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@given(T=st.integers(1, 40), B=st.integers(1, 24), I=st.integers(1, 80), H=st.integers(1, 96),
       seed=st.integers(0, 2**32 - 1), lengths=st.booleans(), bias=st.booleans())
def test_fuzz_kernel_matches_reference_at_larger_sizes(cell, dtype, T, B, I, H, seed, lengths, bias):
    """Opt-in (pytest -m fuzz): the same comparison over sizes where GEMM blocking and threading kick in."""
    check_against_reference(cell, T, B, I, H, dtype, seed, lengths, bias)
