"""rnncore's thread count under a loaded core: a training step (forward + backward) of each cell at the bench's medium
configs on 1 thread, on 2 with the thresholds alone (``2t_fixed``: the adapt_threads knob off, the rule before
2026-12-02) and on 2 with the default measured choice (``2t``), with and without a busy process (``while True:
pass``) on the machine.

    python bench/threads_load.py                    # idle and loaded phases, the variants interleaved
    python bench/threads_load.py --env OMP_WAIT_POLICY=passive --env GOMP_SPINCOUNT=10000
    python bench/threads_load.py --compare "" "OMP_WAIT_POLICY=passive"   # worker processes, alternated

One process alternates idle and loaded phases: the busy process is stopped (SIGSTOP) or continued (SIGCONT) for a
phase; each phase first lets the measured choice settle, then times every variant once per round in a rotating
order, so the machine's other load hits all variants alike. Prints medians (ms) and the ratios to 1 thread.
``--compare`` runs one worker per environment (OpenMP's wait policy is read when the runtime starts, so it needs a
process of its own), alternating them ``--repeat`` times. See bench/README.md, "Threads under load".
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


#: What is timed, per config: (label, rnncore threads, the adapt_threads knob: -1 measured (the default), 0 off:
#: the team, 1 on: one thread). 2t_one runs 1t's code under set_num_threads(2): its ratio to 1t is the noise, and
#: 2t / 2t_one the cost of re-timing the team.
VARIANTS = (("1t", 1, -1), ("2t_fixed", 2, 0), ("2t", 2, -1), ("2t_one", 2, 1))


def worker(configs: list[Config], phases: int, rounds: int, busy_cpu: int | None, sample_s: float,
           settle: int) -> dict:
    import numpy as np

    import rnncore as rc
    from rnncore import _core
    knobs = "adapt_threads" in _core._tuning_get()
    variants = VARIANTS if knobs else tuple(v for v in VARIANTS if v[2] == -1)
    steps = {cfg.id: training_step(cfg, make_inputs(cfg)) for cfg in configs}
    samples: dict = {cfg.id: {(v[0], ld): [] for v in variants for ld in (False, True)} for cfg in configs}
    busy = busy_process(busy_cpu)

    team_calls: dict = {(cfg.id, ld): [0, 0] for cfg in configs for ld in (False, True)}  # 2t: [on the team, all]

    def timed(run, threads, knob, key=None):
        rc.set_num_threads(threads)
        if knobs:
            _core._tuning_set("adapt_threads", knob)
        before = _core._tuning_counts()
        t0, k = time.perf_counter(), 0
        while True:
            run()
            k += 1
            if time.perf_counter() - t0 >= sample_s:
                break
        seconds = (time.perf_counter() - t0) / k
        if key is not None and knobs:
            after = _core._tuning_counts()
            team_calls[key][0] += after["adapt_team"] - before["adapt_team"]
            team_calls[key][1] += sum(after[p] - before[p] for p in ("adapt_team", "adapt_one"))
        return seconds

    try:
        for phase in range(2 * phases):  # idle, loaded, idle, ...: each long enough for the measured choice to settle
            loaded = phase % 2 == 1
            os.kill(busy.pid, signal.SIGCONT if loaded else signal.SIGSTOP)
            for run in steps.values():  # settle: the default (measured) choice learns this phase's load
                for _ in range(settle):
                    timed(run, 2, -1)
            for r in range(rounds):
                for cfg_id, run in steps.items():
                    for label, threads, knob in variants[r % len(variants):] + variants[:r % len(variants)]:
                        key = (cfg_id, loaded) if label == "2t" else None
                        samples[cfg_id][(label, loaded)].append(timed(run, threads, knob, key))
    finally:
        busy.kill()
        busy.wait()
        if knobs:
            _core._tuning_set("adapt_threads", -1)
    out = {cfg_id: {f"{label}_{'loaded' if ld else 'idle'}": float(np.median(v)) * 1e3
                    for (label, ld), v in by.items()} for cfg_id, by in samples.items()}
    for (cfg_id, ld), (team, total) in team_calls.items():
        out[cfg_id][f"team_share_{'loaded' if ld else 'idle'}"] = team / max(total, 1)
    return out


def model_loop(rounds: int, sample_s: float) -> dict:
    """A user's training step (the issue's case): an LSTM (I=H=128, T=50, B=32) with a 512-way head over every step,
    forward and backward, the head either ``rc.Linear`` (rnncore's GEMM) or the user's own NumPy products
    (``y @ W.T``, ``dy.T @ y``, ``dy @ W``: NumPy's BLAS); each as is (rnncore 2 threads, BLAS its default) and inside
    ``rc.threads()`` (BLAS capped to 1), interleaved. Returns medians (ms)."""
    import contextlib

    import numpy as np

    import rnncore as rc
    rng = np.random.default_rng(0)
    T, B, H, V = 50, 32, 128, 512
    lstm, head = rc.LSTM(H, H, seed=0), rc.Linear(H, V, seed=1)
    w, dw = head.weight.copy(), np.zeros_like(head.weight)
    x = rng.standard_normal((T, B, H), dtype=np.float32)
    dlogits = rng.standard_normal((T * B, V), dtype=np.float32)

    def linear_head(y2):
        head(y2)
        return head.backward(dlogits)

    def numpy_head(y2):
        _ = y2 @ w.T
        dw[...] += dlogits.T @ y2
        return dlogits @ w

    def step(head_fn):
        y, _ = lstm(x)
        dy = head_fn(y.reshape(T * B, H))
        lstm.backward(dy.reshape(T, B, H))

    def timed(block, head_fn):
        with block:
            t0, k = time.perf_counter(), 0
            while time.perf_counter() - t0 < sample_s:
                step(head_fn)
                k += 1
        return (time.perf_counter() - t0) / k

    rc.set_num_threads(2)
    blocks = {"as is": contextlib.nullcontext, "rc.threads()": rc.threads}
    heads = {"rc.Linear head": linear_head, "NumPy head": numpy_head}
    variants = {f"{h}, {b}": (blocks[b], heads[h]) for h in heads for b in blocks}
    samples: dict = {name: [] for name in variants}
    for make, fn in variants.values():
        timed(make(), fn)
    for r in range(rounds):
        names = list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]
        for name in names:
            make, fn = variants[name]
            samples[name].append(timed(make(), fn))
    return {name: float(np.median(v)) * 1e3 for name, v in samples.items()}


def report(label: str, results: dict) -> None:
    """Medians (ms per training step) and the ratios to 1 thread, idle and loaded."""
    print(f"== {label}")
    names = [v[0] for v in VARIANTS if f"{v[0]}_idle" in next(iter(results.values()))]
    head = " ".join(f"{n:>8s}" for n in names) + " " + " ".join(f"{n + '/1t':>11s}" for n in names[1:])
    print(f"{'config':28s} {'':5s} {head}")
    for cfg_id, m in results.items():
        for load in ("idle", "loaded"):
            times = [m[f"{n}_{load}"] for n in names]
            ratios = [t / times[0] for t in times[1:]]
            share = m.get(f"team_share_{load}")
            print(f"{cfg_id:28s} {load:6s}" + " ".join(f"{t:8.2f}" for t in times) + " "
                  + " ".join(f"{r:11.3f}" for r in ratios)
                  + (f"   2t calls on the team: {share:.0%}" if share is not None else ""))
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="medium", help="bench/common.py select() patterns (default: medium)")
    ap.add_argument("--cells", default=None)
    ap.add_argument("--phases", type=int, default=2, help="idle/loaded phase pairs")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every variant per config and phase")
    ap.add_argument("--sample", type=float, default=0.2, help="seconds per sample (back-to-back steps)")
    ap.add_argument("--settle", type=int, default=10,
                    help="samples of the measured choice per config at each phase's start, not timed (a load that "
                         "comes and goes within seconds is another regime: the slower is re-timed at most ~1/64 of "
                         "the time)")
    ap.add_argument("--busy-cpu", type=int, default=None, help="pin the busy process to this CPU (default: unpinned)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE set before rnncore loads (worker)")
    ap.add_argument("--compare", nargs="+", default=None,
                    help='environments to alternate, each "K=V K2=V2" ("" = as is), one worker process each')
    ap.add_argument("--repeat", type=int, default=3, help="--compare: alternations")
    ap.add_argument("--json", action="store_true", help="(worker) print the result as JSON")
    ap.add_argument("--model", action="store_true", help="time model_loop (rnncore + NumPy products) instead")
    args = ap.parse_args()
    if args.model:
        print(model_loop(args.rounds * 4, args.sample))
        return
    configs = select(GRID, args.configs, args.cells)

    if args.compare is None:
        for item in args.env:
            key, _, value = item.partition("=")
            os.environ[key] = value
        results = worker(configs, args.phases, args.rounds, args.busy_cpu, args.sample, args.settle)
        if args.json:
            print(json.dumps(results))
        else:
            report(" ".join(args.env) or "default environment", results)
        return

    base = [sys.executable, __file__, "--configs", args.configs, "--phases", str(args.phases),
            "--rounds", str(args.rounds), "--sample", str(args.sample), "--settle", str(args.settle), "--json"]
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
