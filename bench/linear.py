"""The dense layer's products: rnncore.ops.linear_forward + linear_backward (rnncore's C++ GEMM) against the same
products in NumPy (``@`` on its OpenBLAS, at 1 BLAS thread and at its default) and in torch (F.linear, then the
backward's three products as autograd runs them), at the sizes the course's models use.

    python bench/linear.py [--budget 1.0] [--dtype float32]

One training step of a Linear: y = x W^T + b; dW += dy^T x; db += Σ_n dy; dx = dy W. Rows N = B*T in
{64, 640, 3200}, (I, O) in {(32, 64), (64, 11), (128, 128), (256, 512)}. Every variant's results are checked against
float64 NumPy first; then they are timed interleaved (bench/common.py) in two phases (PHASES), median per call, and
the ratios printed (> 1: rnncore faster). The BLAS thread count is switched with threadpoolctl (a cheap call into
OpenBLAS) and rnncore's with rc.set_num_threads, inside the timed calls; torch runs on 1 thread. torch is optional
(imported only if installed).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rnncore as rc  # noqa: E402
from rnncore import ops  # noqa: E402

from common import machine_info, time_interleaved  # noqa: E402

ROWS = (64, 640, 3200)
# Timed in two phases, each interleaved within itself: one thread each (the like-for-like comparison), then the
# defaults (rnncore's 2 threads, OpenBLAS's default). Interleaving a default-threaded OpenBLAS call with the others
# left its workers spinning on the cores during the next variant's call, which then measured the fight (up to 30x).
PHASES = (("rc 1t", "np 1t", "torch 1t"), ("rc 2t", "np default"))
FEATURES = ((32, 64), (64, 11), (128, 128), (256, 512))


def blas_controller():
    """OpenBLAS's thread setting (threadpoolctl's controller of NumPy's BLAS), or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    found = ThreadpoolController().select(user_api="blas").lib_controllers
    return found[0] if found else None


def variants(x, w, b, dy, blas, default_blas, torch):
    """name -> a callable running one forward + backward, returning (y, dW, db, dx)."""
    O, I = w.shape
    dw, db = np.zeros((O, I), x.dtype), np.zeros(O, x.dtype)

    def rnncore_step(threads):
        def step():
            rc.set_num_threads(threads)
            y = ops.nn.linear_forward_checked(x, w, b)
            dx = ops.nn.linear_backward_checked(x, w, dy, dw, db, True)
            return y, dw, db, dx
        return step

    def numpy_step(threads):
        def step():
            if blas is not None:
                blas.set_num_threads(threads)
            y = x @ w.T
            y += b
            dw[...] += dy.T @ x
            db[...] += dy.sum(axis=0)
            return y, dw, db, dy @ w
        return step

    fns = {"rc 1t": rnncore_step(1), "rc 2t": rnncore_step(2)}
    if blas is not None:
        fns["np 1t"] = numpy_step(1)
    fns["np default"] = numpy_step(default_blas)
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        tdw, tdb = torch.from_numpy(dw), torch.from_numpy(db)

        def torch_step():
            y = torch.nn.functional.linear(tx, tw, tb)
            tdw.addmm_(tdy.t(), tx)
            tdb.add_(tdy.sum(0))
            return y.numpy(), dw, db, (tdy @ tw).numpy()
        fns["torch 1t"] = torch_step
    return fns, dw, db


def check(fns, dw, db, x, w, b, dy) -> None:
    """Every variant's y, dW, db, dx against float64 NumPy (one call each from zeroed gradients)."""
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    want = (x64 @ w64.T + b, dy64.T @ x64, dy64.sum(axis=0), dy64 @ w64)
    for name, fn in fns.items():
        dw[...] = 0
        db[...] = 0
        for label, got, ref in zip(("y", "dW", "db", "dx"), fn(), want):
            scale = 1.0 + np.abs(ref).max(initial=0.0)
            err = np.abs(got - ref).max(initial=0.0) / scale
            if err > 1e-4:
                raise SystemExit(f"{name} {label}: relative error {err:.2e} against float64 NumPy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per size")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    blas = blas_controller()
    default_blas = blas.num_threads if blas is not None else None
    info = machine_info()
    print(f"# {info['time']}  {info['cpu'].get('model_name', '?')}, {info['cpu']['logical_cpus']} CPUs, "
          f"load {info['loadavg'][0]:.2f}; {info['rnncore']['build']}; BLAS default {default_blas} threads; "
          f"torch {'absent' if torch is None else torch.__version__}")
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    header = None
    before = rc.get_num_threads()
    try:
        for N in ROWS:
            for I, O in FEATURES:
                x, w, dy = (rng.standard_normal(s).astype(dtype) for s in ((N, I), (O, I), (N, O)))
                b = rng.standard_normal(O).astype(dtype)
                fns, dw, db = variants(x, w, b, dy, blas, default_blas, torch)
                check(fns, dw, db, x, w, b, dy)
                times = {}
                for phase in PHASES:  # each phase interleaved on its own (see the docstring)
                    chosen = {n: fns[n] for n in phase if n in fns}
                    timed = time_interleaved(chosen, args.budget / len(PHASES), min_rounds=9)
                    times.update({n: t.median for n, t in timed.items()})
                    if blas is not None:
                        blas.set_num_threads(default_blas)
                if header is None:
                    header = ["N", "I", "O"] + [f"{n} µs" for n in times]
                    header += [f"{n}/rc 1t" for n in times if n != "rc 1t"]
                    print(" | ".join(header))
                row = [str(N), str(I), str(O)] + [f"{1e6 * t:.1f}" for t in times.values()]
                row += [f"{t / times['rc 1t']:.2f}" for n, t in times.items() if n != "rc 1t"]
                print(" | ".join(row), flush=True)
    finally:
        rc.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
