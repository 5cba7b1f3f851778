"""The benchmark grid: rnncore against PyTorch, JAX and the NumPy reference, per config, mode and thread count.

    python bench/run.py                 # the standard grid (every config, both modes, 1 and 2 threads)
    python bench/run.py --quick         # a handful of configs at 1 thread, < 1 min
    python bench/run.py --configs medium --cells lstm --threads 1 --modes training
    python bench/run.py --shape T=25,B=64,H=512 --cells lstm

Prints one line per row as it finishes and a table at the end; writes bench/results/run-<time>.json (machine, CPU
flags, thread counts, versions, every figure) and, with matplotlib, run-<time>.png. See bench/README.md.

Structure: this process (the driver) starts one worker process per thread count (``--worker``), because JAX's thread
setting is fixed when jax is imported and thread pools are per process. In a worker every library runs with the same
thread count, in the same process, interleaved (common.time_interleaved). A 1-thread worker is pinned to one core
(sched_setaffinity before anything is imported), which is what makes JAX single-threaded (XLA ignores its thread flags)
and keeps the other libraries' helper threads off the second core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import CELLS, GRID, MODES, QUICK, Config, Shape, machine_info, parse_shape, run_worker, select, step_flops  # noqa: E402

RESULTS = BENCH / "results"
LIBS = ("rnncore", "torch", "jax", "reference")


# ---- worker ----------------------------------------------------------------------------------------------------------


def _versions(runners) -> dict:
    out = {}
    for name, r in runners.items():
        out[name] = r.version if r.available else f"n/a ({r.reason})"
    if runners.get("rnncore") is not None:
        out["rnncore_threads"] = runners["rnncore"].rc.get_num_threads()
    if runners.get("torch") is not None and runners["torch"].available:
        torch = runners["torch"].torch
        out["torch_detail"] = {"num_threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
                               "parallel_info": torch.__config__.parallel_info().splitlines()[:8]}
    if runners.get("jax") is not None and runners["jax"].available:
        import jaxlib
        out["jax_detail"] = {"jaxlib": jaxlib.__version__, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                             "devices": [str(d) for d in runners["jax"].jax.devices()]}
    return out


def _peer_sgemm(runners, threads: int) -> dict:
    """For context only: each peer's own 1024³ float32 matmul rate in this process (their GEMM library, not Eigen)."""
    import numpy as np

    from common import time_interleaved
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    fns = {}
    if runners.get("torch") is not None and runners["torch"].available:
        torch = runners["torch"].torch
        ta = torch.from_numpy(a)
        fns["torch"] = lambda: torch.mm(ta, ta)
    if runners.get("jax") is not None and runners["jax"].available:
        jax = runners["jax"].jax
        ja = jax.device_put(a)
        mm = jax.jit(lambda m: m @ m)
        mm(ja).block_until_ready()
        fns["jax"] = lambda: mm(ja).block_until_ready()
    fns["numpy"] = lambda: a @ a
    times = time_interleaved(fns, budget=1.0, min_rounds=5, max_rounds=30)
    return {k: 2 * n ** 3 / t.min / 1e9 for k, t in times.items()}


def _bench_row(runners, cfg: Config, inputs: dict, mode: str, threads: int, budget: float) -> dict:
    from common import time_interleaved
    from peers import check
    row = dict(config=cfg.id, cell=cfg.cell.name, group=cfg.shape.group, T=cfg.shape.T, B=cfg.shape.B,
               I=cfg.shape.I, H=cfg.shape.H, mode=mode, threads=threads, flops=step_flops(cfg.cell, cfg.shape, mode),
               libs={}, checks={}, errors={}, unavailable=[n for n, r in runners.items() if not r.available])
    prepared, outputs = {}, {}
    for name, r in runners.items():
        if not r.available or not r.supports(cfg, mode):
            continue
        try:
            t0 = time.perf_counter()
            p = r.prepare(cfg, inputs, mode)
            outputs[name] = p.outputs()  # the warm-up call (JAX compiles here)
            row["libs"][name] = {"warmup_s": time.perf_counter() - t0}
            prepared[name] = p
        except Exception as e:  # a peer failing must not stop the grid
            row["errors"][name] = f"{type(e).__name__}: {e}"
    for name in outputs:
        if name != "rnncore" and "rnncore" in outputs:
            row["checks"][name] = check(mode, outputs["rnncore"], outputs[name])
    outputs.clear()
    times = time_interleaved({n: p.run for n, p in prepared.items()}, budget, max_samples={"reference": 3})
    for name, t in times.items():
        row["libs"][name].update(min_s=t.min, median_s=t.median, samples=len(t.samples),
                                 gflops=row["flops"] / t.min / 1e9)
    _speedups(row)
    return row


def _speedups(row: dict) -> None:
    libs = row["libs"]
    mine = libs.get("rnncore", {}).get("min_s")
    peers = {n: v["min_s"] for n, v in libs.items() if n != "rnncore" and "min_s" in v}
    row["speedup_vs_torch"] = peers["torch"] / mine if mine and "torch" in peers else None
    if mine and peers:
        best = min(peers, key=peers.get)
        row["best_peer"], row["speedup_vs_best_peer"] = best, peers[best] / mine
    else:
        row["best_peer"], row["speedup_vs_best_peer"] = None, None


def worker(plan_file: str, out_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    threads = plan["threads"]
    from common import make_inputs
    from native import sgemm_rates
    from peers import runners as make_runners
    runners = make_runners(["rnncore", *plan["peers"]])
    for r in runners.values():
        if r.available:
            r.configure(threads)
    result = {"threads": threads, "affinity": sorted(os.sched_getaffinity(0)), "versions": _versions(runners),
              "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                     "XLA_FLAGS")},
              "loadavg_start": list(os.getloadavg()), "sgemm_by_gemm_start": sgemm_rates(threads), "rows": []}
    result["sgemm_gflops_start"] = max(result["sgemm_by_gemm_start"].values())
    result["peer_matmul_gflops"] = _peer_sgemm(runners, threads)
    sgemm = result["sgemm_gflops_start"]
    by_gemm = ", ".join(f"{k} {v:.1f}" for k, v in result["sgemm_by_gemm_start"].items())
    print(f"[worker threads={threads} cpus={result['affinity']}] SGEMM {sgemm:.1f} GFLOP/s ({by_gemm}); peers' own "
          "matmul: " + ", ".join(f"{k} {v:.1f}" for k, v in result["peer_matmul_gflops"].items()), flush=True)
    for c in plan["configs"]:
        cfg = Config(CELLS[c["cell"]], Shape(c["T"], c["B"], c["I"], c["H"], c["group"]))
        inputs = make_inputs(cfg)
        for mode in plan["modes"]:
            row = _bench_row(runners, cfg, inputs, mode, threads, plan["budget"])
            row["sgemm_gflops"] = sgemm
            result["rows"].append(row)
            print(format_line(row), flush=True)
    result["sgemm_by_gemm_end"] = sgemm_rates(threads)
    result["sgemm_gflops_end"] = max(result["sgemm_by_gemm_end"].values())
    result["loadavg_end"] = list(os.getloadavg())
    Path(out_file).write_text(json.dumps(result, indent=1))


# ---- formatting ------------------------------------------------------------------------------------------------------


def _ms(row, lib) -> str:
    v = row["libs"].get(lib, {}).get("min_s")
    if v is not None:
        return f"{v * 1e3:.4g}"
    if lib in row.get("unavailable", ()):
        return "n/a"
    if lib in row.get("errors", {}):
        return "error"
    return "-"


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _check_text(row) -> str:
    bad = [f"{n}:{c['worst']} {c['max']:.1e}" for n, c in row["checks"].items() if not c["ok"]]
    if bad:
        return "FAIL " + ", ".join(bad)
    worst = max((c["max"] for c in row["checks"].values()), default=None)
    return "no peer" if worst is None else f"ok {worst:.0e}"


HEADER = (f"{'config':<32}{'mode':<10}{'thr':>3}{'rnncore ms':>12}{'GFLOP/s':>9}{'%SGEMM':>8}{'torch ms':>10}"
          f"{'jax ms':>10}{'ref ms':>10}{'x torch':>9}{'x best':>8}  check")


def format_line(row: dict) -> str:
    mine = row["libs"].get("rnncore", {})
    gf = mine.get("gflops")
    pct = 100 * gf / row["sgemm_gflops"] if gf and row.get("sgemm_gflops") else None
    return (f"{row['config']:<32}{row['mode']:<10}{row['threads']:>3}{_ms(row, 'rnncore'):>12}"
            f"{'-' if gf is None else f'{gf:.1f}':>9}{'-' if pct is None else f'{pct:.1f}%':>8}"
            f"{_ms(row, 'torch'):>10}{_ms(row, 'jax'):>10}{_ms(row, 'reference'):>10}"
            f"{_x(row.get('speedup_vs_torch')):>9}{_x(row.get('speedup_vs_best_peer')):>8}  {_check_text(row)}")


def print_table(report: dict) -> None:
    rows = report["rows"]
    for threads in sorted({r["threads"] for r in rows}):
        w = report["workers"][str(threads)]
        for mode in MODES:
            sel = [r for r in rows if r["threads"] == threads and r["mode"] == mode]
            if not sel:
                continue
            print(f"\n== {threads} thread{'s' if threads > 1 else ''}, {mode} — SGEMM "
                  f"{w['sgemm_gflops']:.1f} GFLOP/s (start {w['sgemm_gflops_start']:.1f}, end "
                  f"{w['sgemm_gflops_end']:.1f}); times are the minimum per call ==")
            print(HEADER)
            for r in sel:
                print(format_line(r))
            ratios = [r["speedup_vs_torch"] for r in sel if r.get("speedup_vs_torch")]
            if ratios:
                geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
                print(f"{'geometric mean x torch':<56}{geo:.2f}  "
                      f"(rnncore slower than torch in {sum(v < 1 for v in ratios)} of {len(ratios)} rows)")


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = report["rows"]
    panels = [(t, m) for t in sorted({r["threads"] for r in rows}) for m in MODES
              if any(r["threads"] == t and r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.45 * len(rows) / max(1, len(panels)) + 4),
                                                     4 * len(panels)), squeeze=False)
    for ax, (t, m) in zip(axes[:, 0], panels):
        sel = [r for r in rows if r["threads"] == t and r["mode"] == m]
        width = 0.8 / len(LIBS)
        for k, lib in enumerate(LIBS):
            xs = [i + (k - 1.5) * width for i, r in enumerate(sel) if "gflops" in r["libs"].get(lib, {})]
            ys = [r["libs"][lib]["gflops"] for r in sel if "gflops" in r["libs"].get(lib, {})]
            if xs:
                ax.bar(xs, ys, width, label=lib)
        ax.axhline(report["workers"][str(t)]["sgemm_gflops"], color="k", ls="--", lw=0.8, label="SGEMM")
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{m}, {t} thread{'s' if t > 1 else ''}")
        ax.set_xticks(range(len(sel)), [r["config"] for r in sel], rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ---- driver -------------------------------------------------------------------------------------------------------


def _plan_configs(args) -> list[Config]:
    if args.shape:
        shape = parse_shape(args.shape)
        cells = [CELLS[c] for c in (args.cells.split(",") if args.cells else CELLS)]
        return [Config(c, shape) for c in cells]
    base = QUICK if args.quick else GRID
    return select(base, args.configs, args.cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a handful of configs (default threads: 1), < 1 min")
    parser.add_argument("--configs", help="comma-separated globs over group (small, medium, deepbench), shape id "
                                          "(T50-B32-I128-H128) or config id (lstm/T50-B32-I128-H128)")
    parser.add_argument("--cells", help=f"comma-separated, from {list(CELLS)} (globs allowed)")
    parser.add_argument("--shape", help="one custom shape instead of the grid: T=..,B=..,H=..[,I=..]")
    parser.add_argument("--threads", help="comma-separated thread counts (default 1,2; --quick: 1)")
    parser.add_argument("--modes", default=",".join(MODES), help="inference,training (default both)")
    parser.add_argument("--peers", default="torch,jax,reference", help="which peers to run (default all)")
    parser.add_argument("--budget", type=float, help="seconds of timing per row, shared by all libraries "
                                                     "(default 1.5; --quick 1.0); at least 3 rounds are always run")
    parser.add_argument("--cpu", type=int, help="the core a 1-thread worker is pinned to (default: the last one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and the plot")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the selected configs and exit")
    parser.add_argument("--worker", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0

    configs = _plan_configs(args)
    modes = [m for m in args.modes.split(",") if m]
    if not configs or any(m not in MODES for m in modes):
        parser.error(f"nothing selected (configs: {len(configs)}, modes: {modes}; modes are {list(MODES)})")
    if args.list:
        for c in configs:
            print(f"{c.id:<36}{c.shape.group}")
        return 0
    threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 1.5)
    peers = [p for p in args.peers.split(",") if p]
    report = {"command": sys.argv, "machine": machine_info(), "budget_s": budget, "workers": {}, "rows": []}
    print(f"rnncore {report['machine']['rnncore']['version']} ({report['machine']['rnncore']['build']}); "
          f"CPU {report['machine']['cpu'].get('model_name')} x{len(os.sched_getaffinity(0))}; "
          f"load {report['machine']['loadavg']}")
    print(HEADER)
    started = time.time()
    for n in threads:
        plan = {"threads": n, "peers": peers, "modes": modes, "budget": budget,
                "configs": [dict(cell=c.cell.name, T=c.shape.T, B=c.shape.B, I=c.shape.I, H=c.shape.H,
                                 group=c.shape.group) for c in configs]}
        w = run_worker(__file__, plan, n, args.cpu)
        if w is None:
            return 1
        w["sgemm_gflops"] = max(w["sgemm_gflops_start"], w["sgemm_gflops_end"])
        for row in w.pop("rows"):
            row["sgemm_gflops"] = w["sgemm_gflops"]
            row["pct_sgemm"] = (100 * row["libs"]["rnncore"]["gflops"] / w["sgemm_gflops"]
                                if "gflops" in row["libs"].get("rnncore", {}) else None)
            report["rows"].append(row)
        report["workers"][str(n)] = w
    report["elapsed_s"] = time.time() - started
    print_table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / time.strftime("run-%Y%m%d-%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {stem.with_suffix('.json')}", end="")
    if not args.no_plot and plot(report, stem.with_suffix(".png")):
        print(f" and {stem.with_suffix('.png')}", end="")
    print(f" ({report['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
