"""The dates model (``rnncore.demos.dates``, variant "course") against PyTorch: issue 14's "Parity and speed".

    python bench/dates.py                                # parity (float64), then speed (float32, 1 and 2 threads)
    python bench/dates.py --parts parity --steps 100
    python bench/dates.py --parts speed --threads 1 --epochs-timed 3

Both sides train the demo's model from the same initial weights on the same batches by the demo's recipe (seed 0,
what ``dates.train`` does): rnncore through the demo's own objects (``DateTranslator.create``, ``Seq2Seq.loss`` /
``loss_backward``, ``rnncore.utils.clip_grad_norm``, ``rnncore.optim.Adam``, ``LambdaLR`` with the demos'
``warmup_cosine``); PyTorch through bench/seq2seq_peers.py's ``torch_model`` (eager, as its seq2seq tutorial writes
it: a bidirectional nn.LSTM over the packed one-hot sources, an nn.LSTMCell loop over Ty, the attention as nn.Linear
layers) with rnncore's initial weights copied in, ``F.cross_entropy`` (mean over the targets that are not pad:
``Seq2Seq.loss``'s reduction), ``torch.nn.utils.clip_grad_norm_`` at 1.0 over all parameters, ``torch.optim.Adam``
with rnncore's lr, betas and eps, and ``torch.optim.lr_scheduler.LambdaLR`` with the same factor.

- parity (float64): each side's loss at each of the first ``--steps`` steps; issue 14's bound is
  max |loss_rnncore - loss_torch| <= 1e-4 over the first 100 steps. For scale, the same difference between rnncore
  and rnncore with one weight one ulp away (the "1-ulp floor": how much training amplifies a rounding difference).
- speed (float32): one epoch of the demo's training per library: the epoch's 10,000 fresh pairs drawn by the demo's
  generator, then 313 batches of 32, each encoded (``encode_pairs``), forward, loss, backward, clipped, an Adam step
  and a schedule step; everything ``dates.train`` does in an epoch except the held-out evaluation and the progress
  bar. One worker process per thread count (``common.run_worker``; a 1-thread worker is pinned to one core), with
  ``rnncore.set_num_threads(n)`` and ``torch.set_num_threads(n)``. First the float32 loss and every gradient of one
  batch are checked to agree (``common.disagreement`` <= ``common.AGREEMENT``); then a warm-up epoch each and
  ``--epochs-timed`` epochs each, the two libraries interleaved (``common.time_interleaved``): the minimum and the
  median. Then one more epoch each timed by phase, and rnncore's training step by phase at the dates' sizes
  (bench/seq2seq.py's profile part).
Writes bench/results/dates-<time>.json (``--out``). bench/README.md ("Dates model vs PyTorch") holds the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/profile.py shadows the standard library's profile module, which torch.optim imports (through cProfile):
# load the standard one before this directory goes on the path (as bench/seq2seq.py does).
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path.pop(0)
import cProfile  # noqa: E402, F401

sys.path.insert(0, str(BENCH))

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import seq2seq as s2s  # noqa: E402
from seq2seq_peers import PAD, Model, torch_model, weight_shapes  # noqa: E402

from common import AGREEMENT, disagreement, machine_info, run_worker, time_interleaved  # noqa: E402

RESULTS = BENCH / "results"
PARTS = ("parity", "speed")
SEED = 0
PARITY_BOUND = 1e-4  # issue 14: max |loss_rnncore - loss_torch| over the first 100 steps, float64
SPEED_TARGET = 5.0   # issue 14: rnncore's epoch >= 5x faster than PyTorch's, float32
PHASES = ("data", "forward + loss", "backward", "clip", "Adam + schedule")


# ---- the recipe: dates.train's, step for step ----------------------------------------------------------------------


class Recipe:
    """What ``dates.train(seed)`` draws before it trains: the full recipe's sizes (``dates.RECIPES["full"]``), the
    seeds (data, model, one per epoch), the dates training draws from, and the learning-rate factor."""

    def __init__(self, seed: int = SEED) -> None:
        from rnncore.demos import dates
        from rnncore.demos._common import child_seeds, warmup_cosine

        self.dates = dates
        self.epochs, self.per_epoch, self.batch, self.peak = dates.RECIPES["full"]
        data_seed, self.model_seed, *self.epoch_seeds = child_seeds(seed, 2 + self.epochs)
        _, self.training_dates = dates.heldout_split(data_seed)
        self.steps = -(-self.per_epoch // self.batch)
        self.lr_factor = warmup_cosine(self.steps, self.epochs)

    def pairs(self, epoch: int) -> list[tuple[str, str]]:
        """Epoch ``epoch``'s (0-based) training pairs."""
        return self.dates.training_pairs(self.per_epoch, self.epoch_seeds[epoch], self.training_dates)

    def model_sizes(self, model: Any) -> Model:
        """seq2seq_peers' description of a DateTranslator of the course variant."""
        s = model.seq2seq
        return Model(s.source_vocab, s.target_vocab, s.encoder_hidden, s.decoder_hidden, s.decoder.attention_units)


class Clock:
    """Seconds per phase: ``lap(name)`` adds the time since the previous lap to ``name``."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] += now - self.last
        self.last = now


class NoClock:
    def lap(self, name: str) -> None:
        pass


NO_CLOCK = NoClock()


class RnncoreDates:
    """The demo's model and optimizer, in ``dtype``: the calls ``dates.train`` makes per batch, one per phase."""

    name = "rnncore"

    def __init__(self, recipe: Recipe, dtype: Any) -> None:
        from rnncore.datasets import encode_pairs
        from rnncore.optim import Adam
        from rnncore.optim.lr import LambdaLR
        from rnncore.utils import clip_grad_norm

        self.recipe, self._encode_pairs, self._clip = recipe, encode_pairs, clip_grad_norm
        self.model = recipe.dates.DateTranslator.create("course", seed=recipe.model_seed, dtype=dtype)
        self.opt = Adam(self.model, lr=recipe.peak)
        self.sched = LambdaLR(self.opt, recipe.lr_factor)

    def weights(self) -> dict[str, np.ndarray]:
        """The model's weights under seq2seq_peers' names and shapes (copies)."""
        shapes = {k: np.empty(s) for k, s in weight_shapes(self.recipe.model_sizes(self.model)).items()}
        return {k: np.array(v) for k, v in s2s.from_rnncore(self.model.seq2seq.state_dict(), shapes).items()}

    def start_epoch(self) -> None:
        self.model.train()

    def encode(self, pairs: Sequence[tuple[str, str]]) -> Any:
        return self._encode_pairs(pairs, self.model.source_vocab, self.model.target_vocab)

    def forward(self, batch: Any) -> float:
        """zero_grad, then the loss (``DateTranslator.loss`` is ``Seq2Seq.loss`` of the encoded pairs)."""
        self.opt.zero_grad()
        return float(self.model.seq2seq.loss(*batch))

    def backward(self) -> None:
        self.model.loss_backward()

    def clip(self) -> None:
        self._clip(self.model, 1.0)

    def update(self) -> None:
        self.opt.step()
        self.sched.step()

    def gradients(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return s2s.from_rnncore({k: g.copy() for k, g in self.model.seq2seq.gradients().items()}, weights)


class TorchDates:
    """The same model in PyTorch (``seq2seq_peers.torch_model`` in the weights' dtype), the same training calls."""

    name = "torch"

    def __init__(self, recipe: Recipe, sizes: Model, weights: dict[str, np.ndarray], betas: tuple[float, float],
                 eps: float) -> None:
        import torch

        from rnncore.datasets import CharVocab, date_vocabularies, encode_pairs

        self.torch, self.F, self._encode_pairs = torch, torch.nn.functional, encode_pairs
        self.vocabs: tuple[CharVocab, CharVocab] = date_vocabularies()
        self.sizes = sizes
        self.model = torch_model(sizes, weights)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=recipe.peak, betas=betas, eps=eps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, recipe.lr_factor)
        self.loss: Any = None

    def start_epoch(self) -> None:
        self.model.train()

    def encode(self, pairs: Sequence[tuple[str, str]]) -> Any:
        b = self._encode_pairs(pairs, *self.vocabs)
        return (self.torch.from_numpy(b.source), self.torch.from_numpy(b.source_lengths),
                self.torch.from_numpy(b.targets))

    def forward(self, batch: Any) -> float:
        self.opt.zero_grad()
        source, lengths, targets = batch  # the decoder reads the context only: no target inputs
        logits, _ = self.model(source, None, targets.shape[1], lengths)
        self.loss = self.F.cross_entropy(logits.reshape(-1, self.sizes.target_vocab), targets.reshape(-1),
                                         ignore_index=PAD)
        return float(self.loss.item())

    def backward(self) -> None:
        self.loss.backward()

    def clip(self) -> None:
        self.torch.nn.utils.clip_grad_norm_(self.params, 1.0)

    def update(self) -> None:
        self.opt.step()
        self.sched.step()

    def gradients(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: p.grad.numpy().copy() for n, p in self.model.named_parameters()}


def pair(recipe: Recipe, dtype: Any) -> tuple[RnncoreDates, TorchDates]:
    """Both trainers, torch's built from rnncore's initial weights and Adam hyper-parameters."""
    mine = RnncoreDates(recipe, dtype)
    group = mine.opt.param_groups[0]
    theirs = TorchDates(recipe, recipe.model_sizes(mine.model), mine.weights(), tuple(group["betas"]), group["eps"])
    return mine, theirs


def train_steps(trainer: RnncoreDates | TorchDates, pairs: Sequence[tuple[str, str]], batch: int,
                steps: int | None = None, clock: Clock | NoClock = NO_CLOCK) -> list[float]:
    """The demo's inner loop over ``pairs`` (all of them, or the first ``steps`` batches): the step's losses."""
    losses = []
    end = len(pairs) if steps is None else min(len(pairs), steps * batch)
    for start in range(0, end, batch):
        b = trainer.encode(pairs[start:start + batch])
        clock.lap("data")
        losses.append(trainer.forward(b))
        clock.lap("forward + loss")
        trainer.backward()
        clock.lap("backward")
        trainer.clip()
        clock.lap("clip")
        trainer.update()
        clock.lap("Adam + schedule")
    return losses


def epoch(trainer: RnncoreDates | TorchDates, recipe: Recipe, index: int, clock: Clock | NoClock = NO_CLOCK
          ) -> list[float]:
    """One epoch of the demo's training (without the held-out evaluation): draw the pairs, train on them all."""
    pairs = recipe.pairs(index)
    clock.lap("data")
    trainer.start_epoch()
    return train_steps(trainer, pairs, recipe.batch, clock=clock)


# ---- parity (float64) ----------------------------------------------------------------------------------------------


def parity(steps: int) -> dict:
    recipe = Recipe()
    mine, theirs = pair(recipe, np.float64)
    first = mine.weights()
    same_start = all(np.array_equal(first[n], v.numpy()) for n, v in theirs.model.state_dict().items())
    pairs = recipe.pairs(0)
    if steps * recipe.batch > len(pairs):
        raise SystemExit(f"--steps: at most {len(pairs) // recipe.batch} (one epoch)")
    # the noise floor: rnncore against itself with one weight one ulp away (rounding, amplified by training)
    nudged = RnncoreDates(recipe, np.float64)
    w = nudged.model.seq2seq.decoder.query_weight
    w[0, 0] = np.nextafter(w[0, 0], np.inf)
    t0 = time.perf_counter()
    curves = {t.name: train_steps(t, pairs, recipe.batch, steps) for t in (mine, theirs)}
    seconds = time.perf_counter() - t0
    floor = np.abs(np.array(curves["rnncore"]) - np.array(train_steps(nudged, pairs, recipe.batch, steps)))
    diff = np.abs(np.array(curves["rnncore"]) - np.array(curves["torch"]))
    last = mine.weights()
    after = {n: disagreement(last[n], v.detach().numpy()) for n, v in theirs.model.state_dict().items()}
    worst = max(after, key=after.get)
    out = dict(steps=steps, dtype="float64", losses=curves, abs_diff=diff.tolist(), max_abs_diff=float(diff.max()),
               argmax_step=int(diff.argmax()), bound=PARITY_BOUND, ok=bool(same_start and diff.max() <= PARITY_BOUND),
               same_initial_weights=same_start, weights_after={"worst": worst, "max": after[worst]}, seconds=seconds,
               one_ulp_abs_diff=floor.tolist(), one_ulp_max_abs_diff=float(floor.max()))
    print(format_parity(out), flush=True)
    return out


def format_parity(p: dict) -> str:
    lines = [f"parity, float64, the first {p['steps']} steps of the demo's training (seed {SEED}), same initial "
             f"weights: {p['same_initial_weights']}",
             f"  {'step':>5}{'rnncore loss':>22}{'torch loss':>22}{'|difference|':>14}{'1-ulp floor':>14}"]
    shown = sorted({*range(0, p["steps"], 10), p["steps"] - 1})
    for i in shown:
        lines.append(f"  {i + 1:>5}{p['losses']['rnncore'][i]:>22.15f}{p['losses']['torch'][i]:>22.15f}"
                     f"{p['abs_diff'][i]:>14.2e}{p['one_ulp_abs_diff'][i]:>14.2e}")
    lines.append(f"  max |loss_rnncore - loss_torch| over {p['steps']} steps: {p['max_abs_diff']:.2e} (step "
                 f"{p['argmax_step'] + 1}); bound {p['bound']:.0e}: {'met' if p['ok'] else 'MISSED'}")
    w = p["weights_after"]
    lines.append(f"  weights after {p['steps']} steps: largest max|a-b|/max|b| {w['max']:.1e} ({w['worst']})")
    lines.append(f"  1-ulp floor (rnncore against itself, decoder.query_weight[0, 0] one ulp away): max "
                 f"{p['one_ulp_max_abs_diff']:.2e}")
    return "\n".join(lines)


# ---- speed (float32), in a worker per thread count ---------------------------------------------------------------


#: A gradient is compared on its own scale, but never below this fraction of the model's largest gradient entry:
#: score.bias's gradient is the sum of the energies' gradients, which cancel (at the demo's initial weights every
#: energy is positive, and shifting them all leaves the softmax unchanged): 0 but for rounding, a scale of noise.
GRADIENT_SCALE_FLOOR = 1e-3


def check_step(mine: RnncoreDates, theirs: TorchDates, recipe: Recipe) -> dict:
    """The loss and every gradient of the first batch on both sides (no update), each compared as
    common.disagreement does (max |a - b| / max |b|, the scale floored at GRADIENT_SCALE_FLOOR x the largest gradient
    entry), all <= common.AGREEMENT."""
    pairs = recipe.pairs(0)[:recipe.batch]
    weights = mine.weights()
    outputs = {}
    for t in (mine, theirs):
        t.start_epoch()
        loss = t.forward(t.encode(pairs))
        t.backward()
        outputs[t.name] = dict(loss=np.float64(loss), **{f"grads:{k}": v for k, v in t.gradients(weights).items()})
    mine.opt.zero_grad()
    theirs.opt.zero_grad()
    a, b = outputs["rnncore"], outputs["torch"]
    floor = GRADIENT_SCALE_FLOOR * max(float(np.max(np.abs(v))) for k, v in b.items() if k.startswith("grads:"))
    per = {k: float(np.max(np.abs(np.asarray(a[k], np.float64) - b[k]))) /
           max(float(np.max(np.abs(b[k]))), floor if k.startswith("grads:") else 1e-30) for k in b}
    worst = max(per, key=per.__getitem__)
    return dict(ok=per[worst] <= AGREEMENT, worst=worst, max=per[worst], per_output=per)


def dates_profile_config(recipe: Recipe, sizes: Model) -> s2s.TrainConfig:
    """bench/seq2seq.py's training-step row at the dates' sizes: B = 32, Tx = the median longest source of a batch
    of the first epoch, Ty = 11 (10 characters and eos)."""
    pairs = recipe.pairs(0)
    tx = int(np.median([max(len(h) for h, _ in pairs[i:i + recipe.batch]) for i in range(0, len(pairs),
                                                                                              recipe.batch)]))
    ty = len(pairs[0][1]) + 1
    return s2s.TrainConfig(f"dates/Tx{tx}-Ty{ty}-B{recipe.batch}", sizes, tx, ty, recipe.batch)


def worker(plan_file: str, out_file: str) -> None:
    import torch

    import rnncore

    from native import sgemm_rates

    plan = json.loads(Path(plan_file).read_text())
    threads = plan["threads"]
    rnncore.set_num_threads(threads)
    torch.set_num_threads(threads)
    result: dict[str, Any] = dict(threads=threads, affinity=sorted(os.sched_getaffinity(0)),
                                  versions=dict(rnncore=rnncore.__version__, rnncore_threads=rnncore.get_num_threads(),
                                                torch=torch.__version__, torch_threads=torch.get_num_threads()),
                                  loadavg_start=list(os.getloadavg()), sgemm_by_gemm_start=sgemm_rates(threads))
    print(f"[worker threads={threads} cpus={result['affinity']}] SGEMM "
          f"{max(result['sgemm_by_gemm_start'].values()):.1f} GFLOP/s; {result['versions']}", flush=True)
    recipe = Recipe()
    mine, theirs = pair(recipe, np.float32)
    result["check"] = check_step(mine, theirs, recipe)
    c = result["check"]
    print(f"  check, float32, the first batch's loss and every gradient: {'ok' if c['ok'] else 'FAIL'}, largest "
          f"max|a-b|/max|b| {c['max']:.1e} ({c['worst']}; bound {AGREEMENT:.0e})", flush=True)
    if result["check"]["ok"]:
        order = {t.name: itertools.cycle(range(recipe.epochs)) for t in (mine, theirs)}
        fns: dict[str, Callable[[], object]] = {
            t.name: (lambda t=t: epoch(t, recipe, next(order[t.name]))) for t in (mine, theirs)}
        n = plan["epochs_timed"]
        times = time_interleaved(fns, budget=0.0, min_rounds=n, max_rounds=n)  # one untimed warm-up epoch each
        result["epoch_s"] = {name: dict(min=t.min, median=t.median, samples=t.samples) for name, t in times.items()}
        result["phases_s"] = {}
        for t in (mine, theirs):
            clock = Clock()
            epoch(t, recipe, next(order[t.name]), clock)
            result["phases_s"][t.name] = clock.seconds
        print(format_speed(result), flush=True)
    if plan["profile"]:
        result["profile"] = s2s.profile_row(dates_profile_config(recipe, recipe.model_sizes(mine.model)),
                                            plan["budget"])
    result["sgemm_by_gemm_end"] = sgemm_rates(threads)
    result["sgemm_gflops"] = max(*result["sgemm_by_gemm_start"].values(), *result["sgemm_by_gemm_end"].values())
    result["loadavg_end"] = list(os.getloadavg())
    Path(out_file).write_text(json.dumps(result, indent=1, default=float))


def ratio(w: dict, stat: str = "min") -> float:
    """torch's epoch time / rnncore's (> 1: rnncore faster)."""
    return w["epoch_s"]["torch"][stat] / w["epoch_s"]["rnncore"][stat]


def format_speed(w: dict) -> str:
    e = w["epoch_s"]
    n = len(e["rnncore"]["samples"])
    x, x_med = ratio(w), ratio(w, "median")
    lines = [f"speed, float32, {w['threads']} thread(s): seconds per epoch (10,000 pairs, 313 steps), min / median "
             f"of {n}",
             f"  rnncore {e['rnncore']['min']:.3f} / {e['rnncore']['median']:.3f} s   torch "
             f"{e['torch']['min']:.3f} / {e['torch']['median']:.3f} s   torch / rnncore {x:.2f}x (median "
             f"{x_med:.2f}x); target >= {SPEED_TARGET:.0f}x: {'met' if x >= SPEED_TARGET else 'MISSED'}",
             f"  one more epoch each, by phase (s):  {'':>4}" + "".join(f"{p:>17}" for p in PHASES)]
    for name, phases in w["phases_s"].items():
        lines.append(f"  {name:>38}{'':>4}" + "".join(f"{phases[p]:>17.3f}" for p in PHASES))
    mine, theirs = w["phases_s"]["rnncore"], w["phases_s"]["torch"]
    lines.append(f"  {'torch / rnncore':>38}{'':>4}" + "".join(f"{theirs[p] / mine[p]:>16.2f}x" for p in PHASES))
    return "\n".join(lines)


# ---- driver ----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {list(PARTS)}")
    parser.add_argument("--steps", type=int, default=100, help="parity: training steps compared (100)")
    parser.add_argument("--epochs-timed", type=int, default=3, help="speed: timed epochs per library (3)")
    parser.add_argument("--threads", default="1,2", help="speed: comma-separated thread counts (1,2)")
    parser.add_argument("--no-profile", action="store_true", help="speed: skip rnncore's step profile")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per profile phase (2)")
    parser.add_argument("--cpu", type=int, help="the core a 1-thread worker is pinned to (default: the last one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON (bench/results)")
    parser.add_argument("--worker", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    parts = [p for p in args.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        parser.error(f"--parts: choose from {list(PARTS)}")
    if args.steps < 1 or args.epochs_timed < 1:
        parser.error("--steps and --epochs-timed must be at least 1")
    report: dict[str, Any] = {"command": sys.argv, "machine": machine_info(), "workers": {}}
    print(f"rnncore {report['machine']['rnncore']['version']}; CPU {report['machine']['cpu'].get('model_name')} "
          f"x{len(os.sched_getaffinity(0))}; load {report['machine']['loadavg']}", flush=True)
    started = time.time()
    ok = True
    if "parity" in parts:
        report["parity"] = parity(args.steps)
        ok &= report["parity"]["ok"]
    if "speed" in parts:
        for n in (int(t) for t in args.threads.split(",")):
            plan = dict(threads=n, epochs_timed=args.epochs_timed, profile=not args.no_profile, budget=args.budget)
            w = run_worker(__file__, plan, n, args.cpu)
            if w is None:
                return 1
            report["workers"][str(n)] = w
            ok &= w["check"]["ok"]
        print("\nsummary (seconds per epoch, minimum):")
        for n, w in report["workers"].items():
            if "epoch_s" in w:
                print(f"  {n} thread(s): rnncore {w['epoch_s']['rnncore']['min']:.3f} s, torch "
                      f"{w['epoch_s']['torch']['min']:.3f} s: {ratio(w):.2f}x (target >= {SPEED_TARGET:.0f}x)")
    report["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("dates-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {path} ({report['elapsed_s']:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
