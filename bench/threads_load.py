"""rnncore's thread count under a loaded core: a training step (forward + backward) of each cell at the bench's medium
configs with rc.set_num_threads(1) and (2), with and without a busy process (``while True: pass``) on the machine.

    python bench/threads_load.py                    # 1 vs 2 threads, loaded and unloaded, interleaved, this process
    python bench/threads_load.py --env OMP_WAIT_POLICY=passive --env GOMP_SPINCOUNT=10000
    python bench/threads_load.py --compare "" "OMP_WAIT_POLICY=passive"   # worker processes, alternated

In one process, every round times each (threads, load) pair once per config, in a rotating order; the busy process
is stopped (SIGSTOP) for the unloaded samples and continued (SIGCONT) for the loaded ones, so the machine's other
load hits all pairs alike. Prints medians (ms) and the ratios 2 threads / 1 thread. ``--compare`` runs one worker per
environment (OpenMP's wait policy is read when the runtime starts, so it needs a process of its own), alternating
them ``--repeat`` times. See bench/README.md, "Threads under load".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import GRID, Config, make_inputs, select  # noqa: E402


def busy_process(cpu: int | None) -> subprocess.Popen:
    """A process that keeps one core busy (pinned to `cpu` if given), started stopped."""
    code = "while True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


def training_step(cfg: Config, inp: dict):
    """One forward (training=True) + backward of the cell's op at zero initial states."""
    kind = cfg.cell.variant.kind
    kw = cfg.cell.kwargs
    args = (inp["x"], *(None,) * kind.n_states, inp["w_ih"], inp["w_hh"], inp["b_ih"], inp["b_hh"])

    def run():
        y, *_, ws = kind.forward(*args, training=True, **kw)
        kind.backward(ws, inp["dy"])
    return run


def worker(configs: list[Config], rounds: int, busy_cpu: int | None, sample_s: float) -> dict:
    import numpy as np

    import rnncore as rc
    steps = {cfg.id: training_step(cfg, make_inputs(cfg)) for cfg in configs}
    pairs = [(threads, loaded) for loaded in (False, True) for threads in (1, 2)]
    samples: dict = {cfg.id: {p: [] for p in pairs} for cfg in configs}
    busy = busy_process(busy_cpu)
    try:
        for run in steps.values():  # warm-up (workspaces, the block cache, the OpenMP team)
            for threads in (1, 2):
                rc.set_num_threads(threads)
                run()
        for r in range(rounds):
            for cfg_id, run in steps.items():
                order = pairs[r % len(pairs):] + pairs[:r % len(pairs)]
                for threads, loaded in order:
                    os.kill(busy.pid, signal.SIGCONT if loaded else signal.SIGSTOP)
                    time.sleep(0.002)
                    rc.set_num_threads(threads)
                    t0, k = time.perf_counter(), 0
                    while True:
                        run()
                        k += 1
                        if time.perf_counter() - t0 >= sample_s:
                            break
                    samples[cfg_id][(threads, loaded)].append((time.perf_counter() - t0) / k)
    finally:
        busy.kill()
        busy.wait()
    out = {}
    for cfg_id, by_pair in samples.items():
        med = {f"t{t}_{'loaded' if ld else 'idle'}": float(np.median(v)) * 1e3 for (t, ld), v in by_pair.items()}
        out[cfg_id] = med
    return out


def report(label: str, results: dict) -> None:
    print(f"== {label}")
    print(f"{'config':28s} {'1t idle':>8s} {'2t idle':>8s} {'2t/1t':>6s} | "
          f"{'1t load':>8s} {'2t load':>8s} {'2t/1t':>6s}")
    for cfg_id, m in results.items():
        print(f"{cfg_id:28s} {m['t1_idle']:8.2f} {m['t2_idle']:8.2f} {m['t2_idle'] / m['t1_idle']:6.3f} | "
              f"{m['t1_loaded']:8.2f} {m['t2_loaded']:8.2f} {m['t2_loaded'] / m['t1_loaded']:6.3f}")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="medium", help="bench/common.py select() patterns (default: medium)")
    ap.add_argument("--cells", default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sample", type=float, default=0.05, help="seconds per sample (back-to-back steps)")
    ap.add_argument("--busy-cpu", type=int, default=None, help="pin the busy process to this CPU (default: unpinned)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE set before rnncore loads (worker)")
    ap.add_argument("--compare", nargs="+", default=None,
                    help='environments to alternate, each "K=V K2=V2" ("" = as is), one worker process each')
    ap.add_argument("--repeat", type=int, default=3, help="--compare: alternations")
    ap.add_argument("--json", action="store_true", help="(worker) print the result as JSON")
    args = ap.parse_args()
    configs = select(GRID, args.configs, args.cells)

    if args.compare is None:
        for item in args.env:
            key, _, value = item.partition("=")
            os.environ[key] = value
        results = worker(configs, args.rounds, args.busy_cpu, args.sample)
        if args.json:
            print(json.dumps(results))
        else:
            report(" ".join(args.env) or "default environment", results)
        return

    base = [sys.executable, __file__, "--configs", args.configs, "--rounds", str(args.rounds),
            "--sample", str(args.sample), "--json"]
    if args.cells:
        base += ["--cells", args.cells]
    if args.busy_cpu is not None:
        base += ["--busy-cpu", str(args.busy_cpu)]
    for rep in range(args.repeat):
        for env in args.compare:
            cmd = base + [f"--env={item}" for item in env.split()]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            report(f"[{rep}] {env or 'default environment'}", json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
