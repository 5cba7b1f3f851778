"""Markdown tables from bench/run.py's JSON results (what README.md's performance section shows).

    python bench/report.py bench/results/run-A.json [bench/results/run-B.json ...]

One table per (threads, mode): time per call, GFLOP/s, % of the run's SGEMM rate (the faster of the kernels' two
GEMMs, Eigen's and the package's tile GEMM; Eigen's alone in runs from before the tile GEMM), and the ratios over
torch and over the best peer (the faster of torch and JAX). Ratios below 1 (rnncore slower) are bold.
"""

import argparse
import json
from pathlib import Path


def _ratio(value):
    if value is None:
        return "–"
    text = f"{value:.2f}"
    return f"**{text}**" if value < 1 else text


def _ms(lib):
    return "–" if not lib else f"{lib['min_s'] * 1e3:.3g}"


def tables(run: dict) -> str:
    out = []
    rows = run["rows"]
    for threads in sorted({r["threads"] for r in rows}):
        for mode in ("inference", "training"):
            selected = [r for r in rows if r["threads"] == threads and r["mode"] == mode]
            if not selected:
                continue
            worker = run.get("workers", {}).get(str(threads), {})
            by_gemm = worker.get("sgemm_by_gemm_start")
            which = "Eigen SGEMM" if not by_gemm else "SGEMM (" + ", ".join(
                f"{k} {max(v, worker.get('sgemm_by_gemm_end', {}).get(k, 0)):.0f}" for k, v in by_gemm.items()) + ")"
            out.append(f"\n{mode}, {threads} thread{'s' if threads > 1 else ''} "
                       f"({which}: {selected[0]['sgemm_gflops']:.0f} GFLOP/s in the same run):\n")
            out.append("| config | rnncore ms | GFLOP/s | % SGEMM | torch ms | JAX ms | × torch | × best peer |")
            out.append("|---|---|---|---|---|---|---|---|")
            for r in selected:
                libs = r["libs"]
                rc = libs["rnncore"]
                out.append(f"| {r['config']} | {_ms(rc)} | {rc['gflops']:.0f} | {r['pct_sgemm']:.0f} | "
                           f"{_ms(libs.get('torch'))} | {_ms(libs.get('jax'))} | {_ratio(r['speedup_vs_torch'])} | "
                           f"{_ratio(r['speedup_vs_best_peer'])} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        run = json.loads(path.read_text())
        machine = run["machine"]
        print(f"<!-- {path.name}: {machine['cpu'].get('model_name', '')}, {machine['time']}, "
              f"rnncore {machine['rnncore']['version']} ({machine['rnncore']['build']}) -->")
        print(tables(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
