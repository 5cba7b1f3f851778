"""``python -m rnncore``: the package's demos and its self-check (``python -m rnncore --help`` lists them).

    python -m rnncore                  the main command: trains date translation with attention (rnncore.demos.dates)
                                       with progress, loss and held-out exact match per epoch, prints ten
                                       translations with their attention, saves dates_attention.png (matplotlib)
    python -m rnncore dates [options]  the same with options: --seed, --epochs, --fast, --variant, ...
    python -m rnncore check            what this build is, and a self-check of every kernel against the NumPy
                                       reference with timings (paste its output into bug reports)
    python -m rnncore gru-forecast     a stacked GRU forecasting generated series (rnncore.demo) against two baselines
    python -m rnncore addition         seq2seq with attention learns to add: "535+61" -> "596" (rnncore.demos.addition)
    python -m rnncore sine             a simple RNN approximates a function: next values of sines (rnncore.demos.sine)
    python -m rnncore gradients        the vanishing gradient: ||dL/dh_t|| over t, simple RNN vs LSTM and GRU on a
                                       long-lag task (rnncore.demos.gradients)
    python -m rnncore forecast         a GRU (or LSTM) forecasting the yearly sunspot numbers against persistence and a
                                       linear autoregression (rnncore.demos.forecast)
    python -m rnncore digits           scikit-learn's 8x8 digits read row by row by a bidirectional LSTM, many-to-one
                                       (rnncore.demos.digits; needs scikit-learn)
    python -m rnncore charlm           a character-level LSTM language model of the standard library's docstrings,
                                       against a bigram model, with samples (rnncore.demos.charlm; --text FILE)

The self-check prints the version, compiler and SIMD flags, thread count, then for each kernel the largest relative
difference from ``rnncore.reference`` (float64, forward outputs and every gradient) and the time of one forward and
one forward+backward at a medium size. Every command exits with status 1 when its verdict fails: a kernel disagrees
with the reference, the forecaster does not beat both baselines, the date model (or another demo) misses its target.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

import numpy as np

import rnncore
from rnncore import demo, ops, reference
from rnncore._cell_table import VARIANTS, CellKind, Variant

# Float64 kernels and the float64 reference differ only by summation order: anything above this is a bug.
AGREEMENT = 1e-9


def _inputs(rng, kind: CellKind, T, B, I, H, dtype):
    k = 1 / np.sqrt(H)
    GH = kind.n_gates * H
    states = [rng.standard_normal((B, H)).astype(dtype) for _ in kind.states]
    weights = [rng.uniform(-k, k, shape).astype(dtype) for shape in [(GH, I), (GH, H), (GH,), (GH,)]]
    return [rng.standard_normal((T, B, I)).astype(dtype), *states, *weights]


def _upstream(rng, kind: CellKind, T, B, H, dtype):
    """dy, then one gradient per final state (dh_n, dc_n), as backward takes them."""
    grads = {"dy": rng.standard_normal((T, B, H)).astype(dtype)}
    for s in kind.states:
        grads[f"d{s}_n"] = rng.standard_normal((B, H)).astype(dtype)
    return grads


def _disagreement(variant: Variant, rng):
    """Largest relative difference between kernel and reference over outputs and gradients (float64, with lengths)."""
    kind = variant.kind
    T, B, I, H = 9, 5, 7, 11
    args = _inputs(rng, kind, T, B, I, H, np.float64)
    lengths = rng.integers(1, T + 1, size=B)
    up = _upstream(rng, kind, T, B, H, np.float64)
    *got, ws = variant.forward(*args, lengths=lengths)
    *want, cache = variant.reference_forward(*args, lengths=lengths)
    got += kind.backward(ws, **up)
    want += kind.reference_backward(cache, **up)
    return max(float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) + 1e-300)) for g, w in zip(got, want))


def _best_time(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _timings(variant: Variant, rng, T=50, B=32, I=128, H=128):
    kind = variant.kind
    args = _inputs(rng, kind, T, B, I, H, np.float32)
    up = _upstream(rng, kind, T, B, H, np.float32)
    forward, backward = variant.forward, kind.backward
    infer = _best_time(lambda: forward(*args, training=False))
    train = _best_time(lambda: backward(forward(*args)[-1], **up))
    flops = 2 * kind.n_gates * H * (I + H) * B * T
    return infer, train, flops / infer / 1e9, 3 * flops / train / 1e9


COMMANDS = ("dates", "check", "gru-forecast", "addition", "sine", "gradients", "forecast", "digits", "charlm")


#: The demos whose module has add_arguments(parser) and run(args): command -> its help line.
DEMOS = {"addition": "seq2seq with attention learns to add 3-digit numbers (Keras' addition_rnn)",
         "sine": "a simple RNN approximates a function (the next value of noisy sines)",
         "gradients": "the vanishing gradient: a simple RNN vs LSTM and GRU on a long-lag task",
         "forecast": "LSTM/GRU forecasting of the yearly sunspot numbers",
         "digits": "8x8 digits read row by row, many-to-one (needs scikit-learn)",
         "charlm": "a character-level LSTM language model, with samples"}


def _parser() -> argparse.ArgumentParser:
    from rnncore.demos import dates

    parser = argparse.ArgumentParser(prog="python -m rnncore", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="\n\n".join(__doc__.split("\n\n")[:2]))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dates_parser = commands.add_parser("dates", help="date translation with attention (the default)",
                                       description=dates.__doc__.split("\n\n")[0])
    dates.add_arguments(dates_parser)
    commands.add_parser("check", help="build facts and a self-check of every kernel against rnncore.reference")
    commands.add_parser("gru-forecast", help="a stacked GRU forecasting generated series against two baselines")
    for name, help_ in DEMOS.items():
        module = importlib.import_module(f"rnncore.demos.{name}")
        module.add_arguments(commands.add_parser(name, help=help_, description=(module.__doc__ or "").split("\n\n")[0]))
    parser.epilog = ("Without a command: dates, whose options may follow directly (python -m rnncore --seed 3):\n"
                     + dates_parser.format_usage()
                     + "python -m rnncore COMMAND --help describes a command's options.")
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["dates", *argv]  # the main command: date translation
    args = _parser().parse_args(argv)
    if args.command == "check":
        return 1 if not _check() else 0
    if args.command == "gru-forecast":
        return 0 if _demo() else 1
    if args.command in DEMOS:
        return int(importlib.import_module(f"rnncore.demos.{args.command}").run(args))
    from rnncore.demos import dates

    return dates.run(args)


def _check() -> bool:
    """Prints the build facts and the kernels' agreement with the reference; True when every kernel agrees."""
    print(f"rnncore {rnncore.__version__}")
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.platform()}); numpy {np.__version__}")
    print(f"build: {ops.build_info()}")
    print(f"SIMD in use: {ops.simd_instruction_sets()}")
    print(f"threads: {rnncore.get_num_threads()} (OpenMP: {'yes' if ops.has_openmp() else 'no'})")
    print()
    print("self-check against rnncore.reference (float64, with lengths) and timings (float32, T=50 B=32 I=H=128):")
    print(f"  {'kernel':<24}{'max rel. diff':>14}{'':>6}{'inference':>12}{'training':>12}{'GFLOP/s inf/train':>22}")
    rng = np.random.default_rng(0)
    failed = False
    for variant in VARIANTS:
        diff = _disagreement(variant, rng)
        ok = diff <= AGREEMENT
        failed |= not ok
        infer, train, gf_infer, gf_train = _timings(variant, rng)
        print(f"  {variant.label:<24}{diff:>14.1e}{'ok' if ok else 'FAIL':>6}"
              f"{infer * 1e3:>10.2f}ms{train * 1e3:>10.2f}ms{gf_infer:>12.1f} /{gf_train:>6.1f}")
    e = rng.standard_normal((4, 7))
    mask = rng.random((4, 7)) > 0.3
    alpha = ops.masked_softmax(e, mask)
    dalpha = rng.standard_normal(e.shape)
    diff = max(float(np.max(np.abs(alpha - reference.masked_softmax(e, mask)))),
               float(np.max(np.abs(ops.masked_softmax_backward(alpha, dalpha)
                                   - reference.masked_softmax_backward(alpha, dalpha)))))
    failed |= diff > AGREEMENT
    print(f"  {'masked softmax':<24}{diff:>14.1e}{'ok' if diff <= AGREEMENT else 'FAIL':>6}")
    values, lengths = rng.standard_normal((4, 7, 5)), np.array([7, 3, 0, 1])
    dcontext = rng.standard_normal((4, 5))
    got, want = ops.attention_context(e, values, lengths), reference.attention_context(e, values, lengths)
    grads = (ops.attention_context_backward(got[1], values, dcontext),
             reference.attention_context_backward(want[1], values, dcontext))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(got + grads[0], want + grads[1]))
    failed |= diff > AGREEMENT
    print(f"  {'softmax + context':<24}{diff:>14.1e}{'ok' if diff <= AGREEMENT else 'FAIL':>6}")
    print()
    print("all kernels agree with the reference" if not failed else "SOME KERNELS DISAGREE WITH THE REFERENCE")
    return not failed


def _demo() -> bool:
    """Trains rnncore.demo's forecaster; True when it beats both baselines on the held-out series."""
    print("demo: a 2-layer GRU (H=64) learns to forecast the next 10 values of noisy two-sine series it has never seen")
    print("      (4,000 generated series, 40-value windows, MSE + Adam + gradient clipping, 80/20 split)")
    r = demo.train_forecaster(report=print)
    print(f"  held-out MSE {r['test_mse']:.4f} — baselines: repeat the last value {r['last_value_mse']:.4f}, "
          f"linear autoregression {r['linear_ar_mse']:.4f}  ({r['epochs']} epochs in {r['seconds']:.1f} s)")
    ok = r["test_mse"] < min(r["last_value_mse"], r["linear_ar_mse"])
    print("  the GRU beats both baselines" if ok else "  THE GRU DID NOT BEAT THE BASELINES")
    return ok


if __name__ == "__main__":
    sys.exit(main())
