"""Every code path the tuning table's thresholds choose (cpp/src/tuning.hpp), forced through its runtime knob: each
case runs every cell forward (training and inference) and backward on 1 and 2 threads, checks the results against
rnncore.reference and 2 threads against 1, and checks from the kernels' path counts that the forced path ran. So the
suite covers each path whatever the machine's L2 size or SIMD width picks by default; the last tests check that the
cases together take every path this build has and force every knob both ways."""

from dataclasses import dataclass, field

import numpy as np
import pytest

import rnncore
from rnncore import _core, ops, reference

from support.cells import CELL_IDS, CELLS, make_inputs, run_backward, run_forward
from support.tolerances import assert_close

TABLE = _core._tuning_table()
TILE = bool(TABLE["tile_available"])      # float products on the 48 x 8 tile (AVX-512-class builds)
OPENMP = _core.has_openmp()
BATCHED_STEP = "step_tile" if TILE else "step_gebp"  # the batched per-step product this build runs


@dataclass(frozen=True)
class Case:
    name: str
    knobs: dict                          # knob -> 0 (off) / 1 (on); the others stay auto
    sizes: object                        # cell -> (T, B, I, H)
    taken: frozenset                     # paths that must have run (counted over 1 and 2 threads)
    not_taken: frozenset = field(default_factory=frozenset)  # paths that must not have run
    needs_tile: bool = False
    needs_threads: bool = False          # the path exists only on 2+ threads (OpenMP builds)


def _by_gates(one, three, four):
    return {1: one, 3: three, 4: four}


# Per-step products large enough to split on 2 threads (>= 2 x 2 MFLOP: B * N * K >= 2^21 for every product,
# forward and backward) and pointwise rows wide enough to split (8 * B * width >= 2 x 65536).
STEP_SPLIT = lambda cell: (6, 32, 40, _by_gates(512, 256, 128)[cell.gates])  # noqa: E731
# One-row products large enough to split their panels on 2 threads (N * K >= 2^21), H a multiple of every packet.
ROW_SPLIT = lambda cell: (8, 1, 16, _by_gates(1536, 1024, 768)[cell.gates])  # noqa: E731
SMALL = lambda cell: (5, 36, 12, 24)  # noqa: E731  (36 rows: 4 panels of 8 and 4 rows left over)

CASES = [
    Case("serial", {"parallel": 0}, STEP_SPLIT, frozenset({"one_block", BATCHED_STEP}), frozenset({"row_split"})),
    Case("row-split", {"parallel": 1, "row_split": 1}, SMALL, frozenset({"row_split", "one_block"}),
         needs_threads=True),
    Case("step-split-by-batch", {"parallel": 1, "row_split": 0, "batch_split": 1, "weight_in_l2": 1}, STEP_SPLIT,
         frozenset({"one_block", BATCHED_STEP}), frozenset({"row_split"})),
    Case("step-split-by-weight", {"parallel": 1, "row_split": 0, "batch_split": 0, "weight_in_l2": 0}, STEP_SPLIT,
         frozenset({"one_block", BATCHED_STEP}), frozenset({"row_split"})),
    Case("row-fused", {"parallel": 1, "pack_row": 1, "fuse_units": 1}, ROW_SPLIT,
         frozenset({"step_row_fused", "step_row_panels"}), frozenset({"step_row_unpacked"})),
    Case("row-panels", {"parallel": 1, "fuse_units": 0}, ROW_SPLIT, frozenset({"step_row_panels"}),
         frozenset({"step_row_fused", "step_row_unpacked"})),
    Case("row-unpacked", {"parallel": 1, "pack_row": 0}, ROW_SPLIT,
         frozenset({"step_row_unpacked", "step_row_panels"}), frozenset({"step_row_fused"})),
    # Fewer steps than kMinStepsToPack: unpacked by the threshold itself (the backward still packs W).
    Case("row-short", {}, lambda cell: (3, 1, 8, 32), frozenset({"step_row_unpacked", "step_row_panels"}),
         frozenset({"step_row_fused"})),
    # A call the thresholds give the team (>= kMinParallelFlops on 2 threads): on it (adapt off) or on one thread
    # (adapt on: what the measured choice picks when a loaded core makes the team slower).
    Case("adapt-off", {"adapt_threads": 0}, STEP_SPLIT, frozenset({"adapt_team"}), frozenset({"adapt_one"}),
         needs_threads=True),
    Case("adapt-on", {"adapt_threads": 1}, STEP_SPLIT, frozenset({"adapt_one"}), frozenset({"adapt_team"}),
         needs_threads=True),
    Case("gemm-eigen", {"tile_gemm": 0}, SMALL, frozenset({"gemm_eigen"}), frozenset({"gemm_tile"})),
    # 12 rows (T*B) and 8-32 gate columns: GEMMs below kTileGemmMinRows rows, forced onto the tile.
    Case("gemm-tile", {"tile_gemm": 1}, lambda cell: (3, 4, 8, 8), frozenset({"gemm_tile"}),
         frozenset({"gemm_eigen"}), needs_tile=True),
]
CASE_IDS = [c.name for c in CASES]


@pytest.fixture
def knobs_reset():
    """Knobs back to auto, the path counts to zero and the measured thread choices forgotten, before and after."""
    _core._tuning_reset()
    yield
    _core._tuning_reset()


def _run(impl, cell, inputs, upstream):
    outputs, ws = run_forward(impl, cell, inputs)
    return outputs, run_backward(impl, cell, ws, upstream), run_forward(impl, cell, inputs, training=False)[0]


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forced_path_matches_the_reference_and_one_thread(case, cell, knobs_reset):
    if case.needs_tile and not TILE:
        pytest.skip("this build has no tile GEMM (float on AVX-512-class builds only)")
    if case.needs_threads and not OPENMP:
        pytest.skip("built without OpenMP: one thread only")
    T, B, I, H = case.sizes(cell)
    inputs, upstream = make_inputs(np.random.default_rng(43), cell, T, B, I, H, np.float32, lengths=B > 1)
    for name, value in case.knobs.items():
        _core._tuning_set(name, value)
    before = rnncore.get_num_threads()
    results = {}
    try:
        for threads in (1, 2) if OPENMP else (1,):
            rnncore.set_num_threads(threads)
            results[threads] = _run(ops, cell, inputs, upstream)
    finally:
        rnncore.set_num_threads(before)
    counts = _core._tuning_counts()
    _core._tuning_reset()
    want_outputs, want_grads, _ = _run(reference, cell, inputs, upstream)
    one_thread = results[1]
    for threads, result in results.items():
        # (training outputs, gradients, inference outputs), each against the reference and against one thread
        for part, (got, want) in enumerate(zip(result, (want_outputs, want_grads, want_outputs))):
            for name in got:
                where = f"{case.name}, {threads} thread(s), {('training', 'backward', 'inference')[part]}: {name}"
                assert_close(got[name], want[name], "kernel_vs_reference", np.float32, where)
                assert_close(got[name], one_thread[part][name], "kernel_vs_reference", np.float32,
                             where + " vs 1 thread")
    missing = [p for p in case.taken if counts[p] == 0]
    unexpected = [p for p in case.not_taken if counts[p] != 0]
    assert not missing and not unexpected, f"{case.name}: paths {counts} (missing {missing}, unexpected {unexpected})"


def _available(case):
    return (TILE or not case.needs_tile) and (OPENMP or not case.needs_threads)


def test_the_cases_take_every_path_of_this_build():
    """A path the C++ counts (tuning.hpp, Path) and no case forces is a path the suite may never run."""
    paths = set(_core._tuning_counts())
    absent = ({"step_gebp"} if TILE else {"step_tile", "gemm_tile"}) | (
        set() if OPENMP else {"row_split", "adapt_team", "adapt_one"})
    taken = set().union(*(c.taken for c in CASES if _available(c)))
    pairs = {"pair_together", "pair_in_turn"}  # a bidirectional layer's pair: tests/test_bidirectional_pair.py
    assert taken == paths - absent - pairs


def test_the_cases_force_every_knob_both_ways():
    knobs = set(_core._tuning_get())
    forced = {(name, value) for c in CASES for name, value in c.knobs.items()}
    assert forced == {(name, value) for name in knobs for value in (0, 1)}


def test_knobs_set_get_and_reset(knobs_reset):
    assert set(_core._tuning_get().values()) == {-1}
    _core._tuning_set("row_split", 0)
    assert _core._tuning_get()["row_split"] == 0
    with pytest.raises(ValueError, match="unknown tuning knob 'no_such_knob'"):
        _core._tuning_set("no_such_knob", 1)
    with pytest.raises(ValueError, match="-1 \\(auto\\), 0 \\(off\\) or 1 \\(on\\)"):
        _core._tuning_set("row_split", 2)
    _core._tuning_reset()
    assert set(_core._tuning_get().values()) == {-1}
    assert set(_core._tuning_counts().values()) == {0}


@pytest.mark.skipif(not OPENMP, reason="built without OpenMP: one thread only")
def test_measured_choice_times_the_team_then_one_thread(knobs_reset):
    """adapt_threads auto: a new kind of call (nothing measured since knobs_reset) runs on the team first (untimed:
    a warm-up, then timed), then on one thread, so both are timed; the results are the same either way."""
    cell = CELLS[0]
    inputs, upstream = make_inputs(np.random.default_rng(5), cell, 7, 33, 41, 263, np.float32, lengths=False)
    assert 2 * cell.gates * 263 * (41 + 263) * 33 * 7 >= TABLE["min_parallel_flops"]
    before = rnncore.get_num_threads()
    rnncore.set_num_threads(2)
    try:
        first = run_forward(ops, cell, inputs, training=False)[0]
        counts = _core._tuning_counts()
        assert (counts["adapt_team"], counts["adapt_one"]) == (1, 0)
        run_forward(ops, cell, inputs, training=False)  # the warm-up did not count: the team is timed now
        counts = _core._tuning_counts()
        assert (counts["adapt_team"], counts["adapt_one"]) == (2, 0)
        second = run_forward(ops, cell, inputs, training=False)[0]
        counts = _core._tuning_counts()
        assert (counts["adapt_team"], counts["adapt_one"]) == (2, 1)
        for _ in range(4):  # then the faster of the two, now and then the other
            run_forward(ops, cell, inputs, training=False)
        counts = _core._tuning_counts()
        assert counts["adapt_team"] + counts["adapt_one"] == 7
    finally:
        rnncore.set_num_threads(before)
    for name in first:
        assert_close(first[name], second[name], "kernel_vs_reference", np.float32, f"{name}: team vs one thread")
    assert TABLE["adapt_probe_every"] >= 1


@pytest.mark.slow
@pytest.mark.skipif(not OPENMP, reason="built without OpenMP: one thread only")
def test_measured_choice_leaves_a_loaded_machine_to_one_thread(knobs_reset):
    """With both cores kept busy by other processes, a 2-thread training loop runs mostly on one thread (the team's
    every fork/join waits for a scheduler slice)."""
    import subprocess
    import sys

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    cell = CELLS[0]
    inputs, upstream = make_inputs(np.random.default_rng(6), cell, 50, 32, 128, 128, np.float32, lengths=False)
    before = rnncore.get_num_threads()
    rnncore.set_num_threads(2)
    try:
        for _ in range(30):
            _, ws = run_forward(ops, cell, inputs)
            run_backward(ops, cell, ws, upstream)
    finally:
        rnncore.set_num_threads(before)
        for p in busy:
            p.kill()
            p.wait()
    counts = _core._tuning_counts()
    assert counts["adapt_one"] > 2 * counts["adapt_team"], counts
