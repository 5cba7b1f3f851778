"""Where one config's time goes: input GEMM / recurrent GEMMs / pointwise / weight-gradient GEMMs / dx GEMM / other.

    python bench/profile.py --cell lstm --shape T=50,B=32,H=128              # training step, 1 thread
    python bench/profile.py --config lstm/T25-B64-I512-H512 --mode inference
    python bench/profile.py --cell gru --shape T=100,B=1,H=64 --threads 2 --seconds 6

How (the kernels are C++, so this looks from outside):
1. The extension is rebuilt from the working tree into bench/.build/core-symbols with the package's own CMake flags
   but not stripped (-g adds symbols, not code), so samples can be named. Incremental (ninja).
2. A child process (pinned to one core for --threads 1) times each phase by itself (inference forward; training
   forward; backward alone, reusing one workspace), then runs the phase loop under
   ``perf record --call-graph dwarf`` (cpu-clock sampling: this VM has no hardware counters), enabled only around
   the loop (perf's control FIFO).
3. Every sample's call stack is classified (see ``classify``; the table is in bench/README.md): helper names where
   the compiler kept them (``project_inputs``, ``*_side_gradients``, ``column_sums``, ``begin_workspace``), otherwise
   structure — an Eigen expression GEMM is the input projection (forward) or dW / dx (backward, told apart by a
   transposed left operand), Eigen's GEMM internals called directly from a kernel are the per-step recurrent product
   (StepProduct), ``exc_page_fault`` on the stack is a page fault, other libc/kernel leaves are memory, anything else
   inside ``rnncore::<cell>_forward/_backward`` is pointwise. Samples outside the kernels = Python, validation,
   pybind11 and output allocation. OpenMP worker threads take the phase of the main thread's sample nearest in time;
   a thread spinning in libgomp counts as "OpenMP wait".
4. Alongside each GEMM part: the same GEMM shapes timed alone by the standalone SGEMM timer (bench/sgemm.cpp, same
   flags) on the GEMM the kernel uses for them (the package's tile GEMM for the input projection, dx and the weight
   gradients on AVX-512 float builds; Eigen's for the per-step products and elsewhere) — what that part would cost
   at that GEMM's own speed for that shape.
Without perf (or with --method model) only the phase times and the standalone GEMM times are shown; pointwise + other
is then the phase time minus the standalone GEMM time (an estimate).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import CELLS, GRID, Config, Shape, parse_shape, select  # noqa: E402

SAMPLE_HZ = 1999

# ---- the child: phase timings and the profiled loop ------------------------------------------------------------------


def child(spec: dict) -> None:
    import rnncore

    from common import make_inputs, time_interleaved
    rnncore.set_num_threads(spec["threads"])
    cfg = Config(CELLS[spec["cell"]], Shape(**spec["shape"]))
    inp = make_inputs(cfg)
    kind, kw = cfg.cell.variant.kind, cfg.cell.kwargs
    fwd, bwd = kind.forward, kind.backward  # the row's ops (rnncore.ops)
    args = (inp["x"], *(None,) * kind.n_states, inp["w_ih"], inp["w_hh"], inp["b_ih"], inp["b_hh"])
    ws = fwd(*args, training=True, **kw)[-1]
    phases = {"forward (inference)": lambda: fwd(*args, training=False, **kw)} if spec["mode"] == "inference" else {
        "forward (training)": lambda: fwd(*args, training=True, **kw),
        "backward": lambda: bwd(ws, inp["dy"])}
    times = time_interleaved(phases, budget=1.0, min_rounds=5)
    result = {"phase_ms": {k: t.min * 1e3 for k, t in times.items()},
              "phase_median_ms": {k: t.median * 1e3 for k, t in times.items()},
              "rnncore_file": rnncore.__file__, "threads": rnncore.get_num_threads()}
    if spec["mode"] == "inference":
        def one():
            fwd(*args, training=False, **kw)
    else:
        def one():
            w = fwd(*args, training=True, **kw)[-1]
            bwd(w, inp["dy"])
    ctl, ack = os.environ.get("PERF_CTL_FIFO"), os.environ.get("PERF_ACK_FIFO")
    if ctl:
        one()
        with open(ctl, "w") as c, open(ack) as a:
            c.write("enable\n")
            c.flush()
            a.readline()
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < spec["seconds"]:
                one()
                n += 1
            loop = time.perf_counter() - t0
            c.write("disable\n")
            c.flush()
            a.readline()
        result.update(iterations=n, loop_s=loop)
    print("RESULT " + json.dumps(result), flush=True)


# ---- classification --------------------------------------------------------------------------------------------------

KERNEL = re.compile(r"rnncore::(lstm|gru|rnn)_(forward|backward)<")
GEMM_FRAME = re.compile(r"gebp_kernel|gemm_pack_(lhs|rhs)|general_matrix_matrix_product|general_matrix_vector_product|"
                        r"RowPanels|parallelize_gemm|gemm_functor|generic_product_impl|triangular|gemv|"
                        r"Tile<|TileProduct|tile_gemm")
MEMORY_LEAF = re.compile(r"memcpy|memmove|memset|malloc|_int_free|free|calloc|realloc|posix_memalign|mmap|munmap|"
                         r"brk|page|clear_page|__memcpy|__memset")

FORWARD_PARTS = ["input GEMM", "recurrent GEMM", "pointwise", "workspace setup", "memory (copy/alloc)", "page faults"]
BACKWARD_PARTS = ["pointwise", "recurrent GEMM", "weight-gradient GEMMs", "dx GEMM", "bias gradients",
                  "memory (copy/alloc)", "page faults"]


def _template_args(symbol: str, name: str) -> list[str]:
    """The top-level template arguments of the first ``name<...>`` in ``symbol``."""
    at = symbol.find(name + "<")
    if at < 0:
        return []
    args, depth, cur = [], 0, []
    for ch in symbol[at + len(name):]:
        if ch == "<":
            depth += 1
            if depth == 1:
                continue
        elif ch == ">":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                break
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    return args


def classify(stack: list[tuple[str, str]]) -> tuple[str, str]:
    """(phase, part) of one sample. ``stack``: (symbol, dso) pairs, leaf first.

    Helper names are used when the compiler kept them as functions, but inlining differs between builds, so the
    GEMMs are also told apart by structure: an Eigen *expression* product (``generic_product_impl<Lhs, Rhs, .., 8>``,
    8 = GemmProduct) in a forward is the input projection, in a backward it is dW (left operand a Transpose) or dx;
    a GEMV expression (kind 7) or a direct call of Eigen's GEMM internals (StepProduct's packed per-step product) is
    the recurrent product."""
    syms = [s for s, _ in stack]
    phase = next((m.group(2) for s in syms if (m := KERNEL.search(s))), None)
    if phase is None and any("project_inputs" in s for s in syms):
        phase = "forward"  # a deep GEMM stack whose unwinding stopped before the kernel's frame
    leaf_sym, leaf_dso = stack[0] if stack else ("?", "?")
    if phase is None:
        if "libgomp" in leaf_dso:
            return "omp", "OpenMP wait"
        return "outside", "outside the kernels"
    has = lambda word: any(word in s for s in syms)  # noqa: E731
    gemm = any(GEMM_FRAME.search(s) for s in syms)
    if has("exc_page_fault"):  # first touch of fresh memory, wherever it happens (often inside a GEMM's output)
        return phase, "page faults"
    if has("project_inputs"):
        return phase, "input GEMM"
    if has("column_sums"):
        return phase, "bias gradients"
    if (has("recurrent_side_gradients") or has("detail::weight_gradients")) and gemm:
        return phase, "weight-gradient GEMMs"
    product = next((s for s in syms if s.startswith("Eigen::internal::generic_product_impl<")), None)
    if product is not None:
        args = _template_args(product, "generic_product_impl")
        kind = args[-1] if args else ""
        if kind == "8":  # GemmProduct: one of the big GEMMs outside the time loop
            if phase == "forward":
                return phase, "input GEMM"
            return phase, "weight-gradient GEMMs" if args[0].startswith("Eigen::Transpose") else "dx GEMM"
        if kind == "7":  # GemvProduct: a per-step product with B = 1
            return phase, "recurrent GEMM"
    if has("input_side_gradients"):  # multiply_into<TransposeA, ..>: dG^T · x is dW_ih, dG · W_ih is dx
        if not gemm:
            return phase, "bias gradients"
        return phase, "weight-gradient GEMMs" if has("multiply_into<true") else "dx GEMM"
    if gemm:  # Eigen's GEMM internals called directly: StepProduct, the per-step recurrent product
        return phase, "recurrent GEMM"
    if has("begin_workspace"):
        return phase, "workspace setup"
    if "kernel" in leaf_dso or MEMORY_LEAF.search(leaf_sym) or "libc" in leaf_dso:
        return phase, "memory (copy/alloc)"
    if "libgomp" in leaf_dso:
        return phase, "OpenMP wait"
    return phase, "pointwise"


def parse_perf_script(text: str):
    """Yields (tid, time, stack) per sample from ``perf script -F tid,time,ip,sym,dso``."""
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        head = lines[0].split()
        try:
            tid, t = int(head[0]), float(head[1].rstrip(":"))
        except (ValueError, IndexError):
            continue
        stack = []
        for ln in lines[1:]:
            m = re.match(r"\s*[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", ln)
            if m:
                stack.append((m.group(1), m.group(2)))
        yield tid, t, stack


GEMM_PARTS = ("input GEMM", "recurrent GEMM", "weight-gradient GEMMs", "dx GEMM")


def classify_worker(stack: list[tuple[str, str]], main_category) -> tuple[str, str]:
    """(phase, part) of an OpenMP worker thread's sample: its stack starts at the parallel region, so the phase (and
    which GEMM) comes from the main thread's sample nearest in time, ``main_category``."""
    syms = [s for s, _ in stack]
    if not stack or "libgomp" in stack[0][1]:
        return "omp", "OpenMP wait"
    phase, main_part = main_category if main_category else ("outside", "outside the kernels")
    if phase not in ("forward", "backward"):
        return "outside", "outside the kernels"
    if any("StepProduct" in s for s in syms):
        return phase, "recurrent GEMM"
    if any("for_each_row" in s for s in syms):
        return phase, "pointwise"
    if any(GEMM_FRAME.search(s) for s in syms):
        return phase, main_part if main_part in GEMM_PARTS else "GEMM (unattributed)"
    return phase, main_part


def attribute(samples) -> tuple[Counter, Counter, int]:
    """Counts samples per (phase, part) and per leaf symbol (self time); returns them with the sample count."""
    import bisect
    samples = list(samples)
    if not samples:
        return Counter(), Counter(), 0
    # the main thread is the one running Python (its stacks reach libpython)
    with_python = Counter(tid for tid, _, st in samples if any("libpython" in d for _, d in st))
    main_tid = (with_python or Counter(tid for tid, _, _ in samples)).most_common(1)[0][0]
    main = sorted((t, classify(st)) for tid, t, st in samples if tid == main_tid)
    main_times = [t for t, _ in main]
    parts, leaves = Counter(), Counter()
    for tid, t, st in samples:
        leaves[(_short(st[0][0]) if st[0][0] != "[unknown]" else f"[unknown] in {Path(st[0][1]).name}")
               if st else "?"] += 1
        if tid == main_tid:
            parts[classify(st)] += 1
            continue
        k = bisect.bisect_left(main_times, t)
        near = [j for j in (k - 1, k) if 0 <= j < len(main)]
        j = min(near, key=lambda j: abs(main_times[j] - t)) if near else None
        parts[classify_worker(st, main[j][1] if j is not None and abs(main_times[j] - t) < 0.01 else None)] += 1
    return parts, leaves, len(samples)


def _short(sym: str) -> str:
    """A readable symbol: template arguments and parameter lists dropped."""
    out, depth = [], 0
    for ch in sym:
        if ch in "<(":
            if depth == 0:
                out.append("<>" if ch == "<" else "()")
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out).replace("<>()", "()")[:110]


# ---- the standalone GEMM model ---------------------------------------------------------------------------------------


#: cpp/src/tuning.hpp's kTileGemmMinRows: the float GEMMs from this many rows run on the tile.
TILE_GEMM_MIN_ROWS = 16


def gemm_specs(cfg: Config) -> dict[tuple[str, str], list[str]]:
    """The kernel's GEMMs as sgemm.cpp specs, per (phase, part). Per-step products repeat T times (Eigen's GEMM: the
    kernels' step product packs W once per call, which no standalone spec models); the input projection, dx and the
    weight gradients are ``tile_`` specs where the kernels run them on the package's tile GEMM (float, AVX-512 builds,
    M >= 16 rows; main() falls back to Eigen's spec where the build has no tile)."""
    s, G = cfg.shape, cfg.cell.gates
    T, B, I, H, GH, TB = s.T, s.B, s.I, s.H, G * s.H, s.T * s.B
    from rnncore._cell_table import GRU
    gru = cfg.cell.variant.kind is GRU  # GRU's backward splits W_hh into its r,z and n blocks
    reset_before = gru and not cfg.cell.kwargs["reset_after"]  # ... and so does its reset_after=False forward
    rec_fwd = [f"nt:{B}:{2 * H}:{H}:{T}", f"nt:{B}:{H}:{H}:{T}"] if reset_before else [f"nt:{B}:{GH}:{H}:{T}"]
    rec_bwd = [f"nn:{B}:{H}:{2 * H}:{T}", f"nn:{B}:{H}:{H}:{T}"] if gru else [f"nn:{B}:{H}:{GH}:{T}"]
    wgrad = [f"tn:{GH}:{I}:{TB}"] + ([f"tn:{2 * H}:{H}:{TB}", f"tn:{H}:{H}:{TB}"] if gru else [f"tn:{GH}:{H}:{TB}"])
    def tile(spec: str) -> str:
        return "tile_" + spec if int(spec.split(":")[1]) >= TILE_GEMM_MIN_ROWS else spec

    return {("forward", "input GEMM"): [tile(f"nt:{TB}:{GH}:{I}")], ("forward", "recurrent GEMM"): rec_fwd,
            ("backward", "recurrent GEMM"): rec_bwd, ("backward", "weight-gradient GEMMs"): [tile(w) for w in wgrad],
            ("backward", "dx GEMM"): [tile(f"nn:{TB}:{I}:{GH}")]}


def spec_flops(spec: str) -> float:
    _, m, n, k, *count = spec.split(":")
    return 2.0 * int(m) * int(n) * int(k) * (int(count[0]) if count else 1)


# ---- the parent ------------------------------------------------------------------------------------------------------


def perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    return subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                          capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", help="a config id from the grid (python bench/run.py --list)")
    parser.add_argument("--cell", default="lstm", help=f"with --shape: one of {list(CELLS)}")
    parser.add_argument("--shape", default="T=50,B=32,H=128", help="T=..,B=..,H=..[,I=..] (default the medium one)")
    parser.add_argument("--mode", default="training", choices=["training", "inference"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the profiled loop")
    parser.add_argument("--method", default="auto", choices=["auto", "perf", "model"])
    parser.add_argument("--top", type=int, default=12, help="how many self-time symbols to list")
    parser.add_argument("--cpu", type=int, help="core for --threads 1 (default: the last one)")
    parser.add_argument("--rev", help="profile this git revision (e.g. HEAD) instead of the working tree")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0

    if args.config:
        found = select(GRID, args.config)
        if len(found) != 1:
            parser.error(f"--config {args.config!r} matches {len(found)} configs")
        cfg = found[0]
    else:
        cfg = Config(CELLS[args.cell], parse_shape(args.shape))
    method = args.method
    if method == "auto":
        method = "perf" if perf_works() else "model"
    elif method == "perf" and not perf_works():
        parser.error("perf is not usable here (apt-get install linux-perf; needs perf_event_paranoid <= 2)")

    from native import run_sgemm, symbol_build
    print(f"building the unstripped extension from {args.rev or 'the working tree'} (ninja, incremental) ...",
          flush=True)
    try:
        pkg, build_dir = symbol_build(args.rev)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    spec = {"cell": cfg.cell.name, "shape": dict(T=cfg.shape.T, B=cfg.shape.B, I=cfg.shape.I, H=cfg.shape.H),
            "mode": args.mode, "threads": args.threads, "seconds": args.seconds}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg), str(BENCH)]), OMP_NUM_THREADS=str(args.threads))
    pin = {args.cpu if args.cpu is not None else sorted(os.sched_getaffinity(0))[-1]} if args.threads == 1 else None
    preexec = (lambda: os.sched_setaffinity(0, pin)) if pin else None
    child_cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    with tempfile.TemporaryDirectory() as tmp:
        if method == "perf":
            ctl, ack, data = Path(tmp, "ctl"), Path(tmp, "ack"), Path(tmp, "perf.data")
            os.mkfifo(ctl)
            os.mkfifo(ack)
            env.update(PERF_CTL_FIFO=str(ctl), PERF_ACK_FIFO=str(ack))
            cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "--call-graph", "dwarf,65528",
                   "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-o", str(data), "--", *child_cmd]
        else:
            cmd = child_cmd
        proc = subprocess.run(cmd, env=env, preexec_fn=preexec, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(line[len("RESULT "):])
        if method == "perf":
            text = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,ip,sym,dso", "--no-inline"],
                                  capture_output=True, text=True).stdout
            parts, leaves, total = attribute(parse_perf_script(text))

    threads_note = "" if args.threads == 1 else " (CPU time summed over threads)"
    print(f"\n{cfg.id}  {args.mode}, {args.threads} thread{'s' if args.threads > 1 else ''}; "
          f"rnncore from {Path(result['rnncore_file']).parent}")
    for phase, ms in result["phase_ms"].items():
        print(f"  {phase:<22}{ms:9.3f} ms per call (min; median {result['phase_median_ms'][phase]:.3f})")

    specs = gemm_specs(cfg)
    standalone = {}
    for key, sp in specs.items():
        if args.mode == "inference" and key[0] == "backward":
            continue
        rows = run_sgemm(sp, args.threads, 0.2, build_dir=build_dir)
        if any(r["gflops"] is None for r in rows):  # a build without the tile GEMM runs these on Eigen's
            sp = [s.removeprefix("tile_") for s in sp]
            rows = run_sgemm(sp, args.threads, 0.2, build_dir=build_dir)
        standalone[key] = (sum(r["seconds"] for r in rows) * 1e3, sum(spec_flops(s) for s in sp))

    phases = ["forward"] if args.mode == "inference" else ["forward", "backward"]
    if method == "perf":
        per_call = 1e3 / SAMPLE_HZ / max(result["iterations"], 1)  # CPU ms per sample per call
        wall = result["loop_s"] * 1e3 / max(result["iterations"], 1)
        print(f"\nperf: {total} samples over {result['iterations']} calls ({wall:.3f} ms per call in the loop)"
              f"{threads_note}")
        rate = "GFLOP/s" if args.threads == 1 else "GF/CPU-s"
        print(f"  {'part':<36}{'% CPU':>7}{'CPU ms/call':>13}{rate:>9}   standalone, same shapes and GEMM "
              f"({args.threads} thread{'s' if args.threads > 1 else ''}, wall clock)")
        for phase in phases:
            names = FORWARD_PARTS if phase == "forward" else BACKWARD_PARTS
            extra = sorted({p for (ph, p) in parts if ph == phase} - set(names))
            print(f"  {phase}")
            for part in names + extra:
                n = parts.get((phase, part), 0)
                ms = n * per_call
                alone = standalone.get((phase, part))
                gf = f"{alone[1] / ms / 1e6:9.1f}" if alone and ms > 0 else f"{'':9}"
                ref = f"   {alone[0]:.3f} ms ({alone[1] / alone[0] / 1e6:.0f} GFLOP/s)" if alone else ""
                print(f"    {part:<34}{100 * n / total:6.1f}%{ms:13.3f}{gf}{ref}")
        for key, label in [(("outside", "outside the kernels"), "outside the kernels (Python, checks, pybind11)"),
                           (("omp", "OpenMP wait"), "OpenMP wait (worker threads idle/spinning)")]:
            n = parts.get(key, 0)
            if n or key[0] == "outside":
                print(f"  {label:<38}{100 * n / total:6.1f}%{n * per_call:13.3f}")
        print(f"  {'total':<38}{100.0:6.1f}%{total * per_call:13.3f}")
        print(f"\n  top {args.top} functions by self time (leaf samples):")
        for sym, n in leaves.most_common(args.top):
            print(f"    {100 * n / total:5.1f}%  {sym}")
    else:
        print("\nmodel (no perf): phase time vs the same GEMM shapes timed alone with Eigen")
        for phase in phases:
            measured = next(ms for k, ms in result["phase_ms"].items() if k.startswith(phase))
            gemm_ms = sum(v[0] for (ph, _), v in standalone.items() if ph == phase)
            print(f"  {phase}: {measured:.3f} ms measured")
            for (ph, part), (ms, flops) in standalone.items():
                if ph == phase:
                    print(f"    {part:<34}{ms:9.3f} ms standalone ({flops / ms / 1e6:.0f} GFLOP/s)")
            print(f"    {'pointwise + other (remainder)':<34}{measured - gemm_ms:9.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
