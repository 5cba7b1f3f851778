"""Peak memory of one training step (forward + backward), rnncore against PyTorch and JAX.

    python bench/memory.py                                   # LSTM T=25 B=64 I=H=512
    python bench/memory.py --cell gru --shape T=25,B=32,H=1024

Each library runs in its own fresh process (pinned to one core, 1 thread), so one library's allocator caches cannot
flatter or penalise another. Protocol per process: build the inputs, run one warm-up step (JAX compiles here), drop
its results, collect garbage, malloc_trim(0) and rnncore.empty_cache() (freed memory goes back to the OS), reset the
kernel's high-water mark (/proc/self/clear_refs), then run the measured step and keep its results (y and every
gradient) alive:
    peak RSS delta = VmHWM after the step - VmRSS before it
i.e. everything the step needed at its worst moment: workspace/saved activations, temporaries, and the results.
Alongside, what each library says it keeps for backward:
    rnncore   the workspace's .nbytes (copies of x and the weights, every state, the post-activation gates)
    torch     the bytes of the tensors autograd saves for backward (saved_tensors_hooks; shared storage counted once)
    jax       XLA's memory analysis of the compiled step: temporaries (temp_size_in_bytes)
and the size of the step's results (y, dx, dW_ih, dW_hh, db_ih, db_hh), which every library must return.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import CELLS, GRID, Config, Shape, parse_shape, select  # noqa: E402

DEFAULT = "lstm/T25-B64-I512-H512"
MiB = 2 ** 20


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _trim() -> None:
    gc.collect()
    rnncore = sys.modules.get("rnncore")
    if rnncore is not None and hasattr(rnncore, "empty_cache"):
        rnncore.empty_cache()  # rnncore keeps freed large blocks for reuse: hand them back, or they hide the peak
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _reported(lib: str, runner, cfg: Config, inp: dict) -> dict:
    """What the library itself says it keeps for backward (see the module docstring)."""
    if lib == "rnncore":
        v = cfg.cell.variant  # the ops of the row: rnncore.ops
        states = (None,) * v.kind.n_states
        ws = v.forward(inp["x"], *states, inp["w_ih"], inp["w_hh"], inp["b_ih"], inp["b_hh"], training=True)[-1]
        return {"workspace_bytes": int(ws.nbytes)}
    if lib == "torch":
        torch = runner.torch
        m = runner._module(cfg, inp)
        x = torch.from_numpy(inp["x"].copy()).requires_grad_(True)
        seen = {}

        def pack(t):
            seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(x)[0]
        return {"saved_for_backward_bytes": int(sum(seen.values()))}
    if lib == "jax":
        jax = runner.jax
        from peers import _jax_forward
        forward = _jax_forward(cfg.cell, jax)

        def step(params, x, dy):
            y, vjp = jax.vjp(forward, params, x)
            return y, vjp(dy)

        params = tuple(inp[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
        ma = jax.jit(step).lower(params, inp["x"], inp["dy"]).compile().memory_analysis()
        return {"xla_temp_bytes": int(ma.temp_size_in_bytes), "xla_output_bytes": int(ma.output_size_in_bytes)}
    return {}


def child(lib: str, spec: dict) -> dict:
    from common import make_inputs
    from peers import runners
    cfg = Config(CELLS[spec["cell"]], Shape(**spec["shape"]))
    runner = runners([lib])[lib]
    if not runner.available:
        return {"lib": lib, "available": False, "reason": runner.reason}
    runner.configure(1)
    inp = make_inputs(cfg)
    prepared = runner.prepare(cfg, inp, "training")
    warm = prepared.run()
    del warm
    _trim()
    exact = _reset_peak()
    before = _status("VmRSS")
    result = prepared.run()  # kept alive until the high-water mark is read
    peak = _status("VmHWM")
    out = {"lib": lib, "available": True, "version": runner.version, "rss_before": before, "hwm": peak,
           "peak_delta_bytes": peak - before, "hwm_reset": exact}
    if lib == "rnncore":
        import rnncore
        if hasattr(rnncore, "memory_stats"):
            out["rnncore_cache_after_step"] = rnncore.memory_stats()
    del result
    out.update(_reported(lib, runner, cfg, inp))
    return out


def result_bytes(cfg: Config) -> int:
    """y, dx, dW_ih, dW_hh, db_ih, db_hh in float32: what any training step must hand back."""
    s, GH = cfg.shape, cfg.cell.gates * cfg.shape.H
    return 4 * (s.T * s.B * s.H + s.T * s.B * s.I + GH * s.I + GH * s.H + 2 * GH)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", help=f"a grid config id (default {DEFAULT} unless --shape)")
    parser.add_argument("--cell", default="lstm", help=f"with --shape: one of {list(CELLS)}")
    parser.add_argument("--shape", help="T=..,B=..,H=..[,I=..]")
    parser.add_argument("--libs", default="rnncore,torch,jax")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], json.loads(args.child[1]))), flush=True)
        return 0
    if args.shape:
        cfg = Config(CELLS[args.cell], parse_shape(args.shape))
    else:
        found = select(GRID, args.config or DEFAULT)
        if len(found) != 1:
            parser.error(f"--config matches {len(found)} configs")
        cfg = found[0]
    spec = json.dumps({"cell": cfg.cell.name, "shape": dict(T=cfg.shape.T, B=cfg.shape.B, I=cfg.shape.I,
                                                            H=cfg.shape.H)})
    cpu = sorted(os.sched_getaffinity(0))[-1]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for lib in args.libs.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", lib, spec], env=env, capture_output=True,
                              text=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            rows.append({"lib": lib, "available": False, "reason": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(line[len("RESULT "):]))
    inputs = 4 * (cfg.shape.T * cfg.shape.B * (cfg.shape.I + cfg.shape.H))
    print(f"training step {cfg.id}: results (y + all gradients) = {result_bytes(cfg) / MiB:.1f} MiB; "
          f"x + dy = {inputs / MiB:.1f} MiB")
    print(f"{'library':<10}{'peak RSS delta':>16}{'  kept for backward (library-reported)':<44}")
    for r in rows:
        if not r.get("available"):
            print(f"{r['lib']:<10}{'n/a':>16}  {r.get('reason', '')}")
            continue
        kept = ", ".join(f"{k.replace('_bytes', '')} {v / MiB:.1f} MiB" for k, v in r.items()
                         if k.endswith("_bytes") and k != "peak_delta_bytes")
        note = "" if r["hwm_reset"] else " (HWM not resettable: lower bound)"
        print(f"{r['lib']:<10}{r['peak_delta_bytes'] / MiB:>12.1f} MiB  {kept}{note}")
    if args.json:
        args.json.write_text(json.dumps({"config": cfg.id, "result_bytes": result_bytes(cfg), "rows": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
