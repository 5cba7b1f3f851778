"""What every benchmark script shares, one home per idea: the cells, the config grid, the FLOP formula, the inputs,
the timing helper, the agreement measure and the machine description."""

from __future__ import annotations

import fnmatch
import gc
import math
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

# ---- cells ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A benchmarked cell: a row of rnncore's cell table (rnncore._cell_table.VARIANTS) under the tables' name."""
    name: str          # what --cells and the tables call it
    variant_name: str  # the row's name in rnncore._cell_table.VARIANTS

    @property
    def variant(self):
        # imported on first use, not with this module: the scripts choose when rnncore (and its OpenMP) loads
        from rnncore._cell_table import variant
        return variant(self.variant_name)

    @property
    def op(self) -> str:
        """rnncore.ops.<op>_forward / <op>_backward."""
        return self.variant.kind.name

    @property
    def gates(self) -> int:
        """G."""
        return self.variant.kind.n_gates

    @property
    def options(self) -> tuple:
        """Keyword options of the forward, as ((key, value), ...)."""
        return self.variant.option_values

    @property
    def kwargs(self) -> dict:
        return dict(self.options)


CELLS = {c.name: c for c in [
    Cell("lstm", "lstm"),
    Cell("gru", "gru_reset_after"),         # PyTorch / cuDNN / Keras default
    Cell("gru_rb", "gru_reset_before"),     # reset before the product (Cho 2014); not in torch
    Cell("rnn_tanh", "rnn_tanh"),
]}
ALL_CELLS = tuple(CELLS)

# ---- shapes and the grid ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    T: int
    B: int
    I: int
    H: int
    group: str = "custom"

    @property
    def id(self) -> str:
        return f"T{self.T}-B{self.B}-I{self.I}-H{self.H}"


@dataclass(frozen=True)
class Config:
    cell: Cell
    shape: Shape

    @property
    def id(self) -> str:
        return f"{self.cell.name}/{self.shape.id}"


def forward_flops(cell: Cell, s: Shape) -> float:
    """The forward's multiply-adds counted as 2 FLOPs: 2·G·H·(I+H)·B·T (the GEMMs only)."""
    return 2.0 * cell.gates * s.H * (s.I + s.H) * s.B * s.T


def step_flops(cell: Cell, s: Shape, mode: str) -> float:
    """FLOPs of one timed call: inference = the forward, training step (forward + backward) = 3 × the forward."""
    return forward_flops(cell, s) * (3 if mode == "training" else 1)


def _grid() -> list[Config]:
    configs = []
    for B in (1, 4):  # small / latency
        for H in (8, 32, 64):
            configs += [Config(CELLS[c], Shape(100, B, H, H, "small")) for c in ALL_CELLS]
    configs += [Config(CELLS[c], Shape(50, 32, 128, 128, "medium")) for c in ALL_CELLS]
    deepbench = []  # DeepBench-style training sizes (I = H)
    for B in (16, 64):
        deepbench.append(("lstm", Shape(150, B, 256, 256, "deepbench")))
    for H in (512, 1024):
        for B in (16, 64):
            deepbench.append(("lstm", Shape(25, B, H, H, "deepbench")))
    deepbench += [("gru", Shape(25, 32, 1024, 1024, "deepbench")), ("gru_rb", Shape(25, 32, 1024, 1024, "deepbench"))]
    for B in (16, 64):
        deepbench.append(("rnn_tanh", Shape(50, B, 1760, 1760, "deepbench")))
    configs += [Config(CELLS[c], s) for c, s in deepbench]
    return configs


GRID = _grid()

#: --quick: a handful of configs covering every cell and both regimes (latency-bound and GEMM-bound), < 1 min.
QUICK = [Config(CELLS["lstm"], Shape(100, 1, 32, 32, "small")),
         Config(CELLS["gru"], Shape(100, 4, 64, 64, "small")),
         Config(CELLS["lstm"], Shape(50, 32, 128, 128, "medium")),
         Config(CELLS["gru_rb"], Shape(50, 32, 128, 128, "medium")),
         Config(CELLS["rnn_tanh"], Shape(50, 32, 128, 128, "medium"))]

MODES = ("inference", "training")

#: The reference (a Python loop over steps, float64) is timed only up to this many forward FLOPs.
REFERENCE_MAX_FLOPS = 5e7


def parse_shape(text: str) -> Shape:
    """``T=25,B=64,I=512,H=512`` (I defaults to H) -> Shape."""
    values = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip().upper() not in "TBIH" or not value:
            raise ValueError(f"--shape wants T=..,B=..,H=..[,I=..], got {text!r}")
        values[key.strip().upper()] = int(value)
    if not {"T", "B", "H"} <= values.keys():
        raise ValueError(f"--shape needs T, B and H, got {text!r}")
    return Shape(values["T"], values["B"], values.get("I", values["H"]), values["H"])


def select(configs: list[Config], patterns: str | None = None, cells: str | None = None) -> list[Config]:
    """Filters a config list. ``patterns``: comma-separated globs matched against the group (small, medium,
    deepbench), the shape id (T50-B32-I128-H128) or the config id (lstm/T50-B32-I128-H128). ``cells``: comma-separated
    cell names (``gru`` matches only reset_after=True; ``gru*`` both)."""
    out = configs
    if cells:
        wanted = [c.strip() for c in cells.split(",") if c.strip()]
        unknown = [w for w in wanted if not any(fnmatch.fnmatch(name, w) for name in ALL_CELLS)]
        if unknown:
            raise ValueError(f"unknown cell(s) {unknown}; cells are {list(ALL_CELLS)}")
        out = [c for c in out if any(fnmatch.fnmatch(c.cell.name, w) for w in wanted)]
    if patterns:
        pats = [p.strip() for p in patterns.split(",") if p.strip()]
        out = [c for c in out if any(fnmatch.fnmatch(key, p) for p in pats
                                     for key in (c.shape.group, c.shape.id, c.id))]
    return out


# ---- inputs -------------------------------------------------------------------------------------------------------


def make_inputs(cfg: Config, seed: int = 0) -> dict:
    """float32 inputs in rnncore's (= PyTorch's) layouts: x [T,B,I], weights U(-1/√H, 1/√H) like torch's init,
    dy [T,B,H] (the upstream gradient of a training step). Initial states are zeros (None) everywhere."""
    s, G = cfg.shape, cfg.cell.gates
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(s.H)
    u = lambda *shape: rng.uniform(-k, k, shape).astype(np.float32)  # noqa: E731
    return dict(x=rng.standard_normal((s.T, s.B, s.I), dtype=np.float32),
                w_ih=u(G * s.H, s.I), w_hh=u(G * s.H, s.H), b_ih=u(G * s.H), b_hh=u(G * s.H),
                dy=rng.standard_normal((s.T, s.B, s.H), dtype=np.float32))


#: What a run returns for the checks: forward output, and in training the gradients.
OUTPUT_KEYS = {"inference": ("y",), "training": ("y", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh")}


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the largest difference relative to the array's scale (0 = identical)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / max(scale, 1e-30) if b.size else 0.0


#: Largest accepted disagreement between rnncore and a float32 peer (summation order only; a wrong gate gives > 1e-2).
AGREEMENT = 1e-4


# ---- timing -------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    samples: list = field(default_factory=list)  # seconds per call, one per sample

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


def time_interleaved(fns: dict, budget: float, min_rounds: int = 3, max_rounds: int = 200,
                     max_samples: dict | None = None, min_sample: float = 2e-3, lead_in: bool = False
                     ) -> dict[str, Timing]:
    """Times already-warm callables round-robin: each round runs every one once (in a rotating order, so none always
    follows the same neighbour), so machine noise hits all of them alike. A sample is ``k`` back-to-back calls with
    ``k`` chosen to last ≥ ``min_sample`` (short calls), divided by ``k``. Rounds: enough to fill ``budget`` seconds,
    within [min_rounds, max_rounds]; ``max_samples`` caps slow ones (e.g. the reference) to fewer rounds.
    ``lead_in``: each sample follows one untimed call of the same callable (its steady state, as in a training loop:
    on 2 threads a call right after an idle spell or another library's call starts with its threads and caches
    cold, bench/README "The train rows' steady state")."""
    max_samples = max_samples or {}
    inner, est = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        est[name] = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, min(1000, int(math.ceil(min_sample / est[name]))))
    per_round = sum(est[n] * inner[n] for n in fns)
    rounds = max(min_rounds, min(max_rounds, int(math.ceil(budget / max(per_round, 1e-9)))))
    names = list(fns)
    out = {n: Timing() for n in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                if len(out[name].samples) >= max_samples.get(name, rounds):
                    continue
                fn, k = fns[name], inner[name]
                if lead_in:
                    fn()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                out[name].samples.append((time.perf_counter() - t0) / k)
    finally:
        gc.enable()
    return out


# ---- the machine --------------------------------------------------------------------------------------------------


def run_worker(script: str, plan: dict, threads: int, cpu: int | None = None) -> dict | None:
    """Runs ``python script --worker PLAN OUT`` in a child process set up for ``threads`` threads and returns the
    JSON it wrote to OUT (None if it failed). Thread settings are per process (JAX fixes its threads at import):
    the child gets OMP/OpenBLAS/MKL_NUM_THREADS and peers.jax_environment; a 1-thread child is pinned to one core
    (``cpu``, default the last one) with sched_setaffinity before it imports anything, which is what makes JAX
    single-threaded and keeps every library's helper threads off the other core."""
    import json
    import subprocess
    import sys
    import tempfile

    from peers import jax_environment
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        print(f"warning: {threads} threads on {len(cpus)} CPUs", file=sys.stderr)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), **jax_environment(threads))
    pin = {cpu if cpu is not None else cpus[-1]} if threads == 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        plan_file, out_file = os.path.join(tmp, "plan.json"), os.path.join(tmp, "out.json")
        with open(plan_file, "w", encoding="utf-8") as f:
            json.dump(plan, f)
        proc = subprocess.run([sys.executable, script, "--worker", plan_file, out_file], env=env,
                              preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None)
        if proc.returncode != 0:
            print(f"worker for {threads} threads failed (exit {proc.returncode})", file=sys.stderr)
            return None
        with open(out_file, encoding="utf-8") as f:
            return json.load(f)


def cpu_description() -> dict:
    info = {"machine": platform.machine(), "logical_cpus": os.cpu_count(), "model": platform.processor(),
            "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not info.get("model_name"):
                    info["model_name"] = value.strip()
                elif key.strip() == "flags" and not info["flags"]:
                    info["flags"] = value.split()
    except OSError:
        pass
    simd = [f for f in info["flags"] if f.startswith(("avx", "fma", "sse4", "amx", "f16c"))]
    info["simd_flags"] = simd
    return info


def _git(*args: str) -> str:
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    import hashlib

    import rnncore
    from rnncore import _core, ops
    info = {
        "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
        "rnncore": {"version": rnncore.__version__, "file": rnncore.__file__, "build": ops.build_info(),
                    "simd": ops.simd_instruction_sets(), "openmp": ops.has_openmp(),
                    "core_sha1": hashlib.sha1(open(_core.__file__, "rb").read()).hexdigest()[:12],
                    "repo_head": _git("rev-parse", "--short=12", "HEAD"),
                    "repo_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))},
        "cpu": cpu_description(),
        "loadavg": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return info
