"""Learning-rate schedules — ``torch.optim.lr_scheduler``'s semantics, per parameter group.

Each schedule sets ``group["lr"]`` of every one of ``optimizer.param_groups``. Call ``scheduler.step()`` once per
epoch (or per batch) *after* ``opt.step()``; ``ReduceLROnPlateau.step(metrics)`` takes the monitored value.
``get_last_lr()`` returns the learning rates the schedule last set (a list, one per group) and ``last_epoch`` counts
the steps. Building a schedule already sets the epoch-0 rates (``LinearLR`` multiplies by ``start_factor`` at once).

The rates follow torch's recursive forms: each step scales the group's *current* lr, so a change made by hand or by
another schedule on the same optimizer carries on (two schedules chain multiplicatively, as in torch); the first
schedule built on an optimizer records each group's starting lr as ``group["initial_lr"]`` (torch's key), which is
every later schedule's ``base_lrs``. ``state_dict()`` holds numbers and lists only (never the ``LambdaLR``
functions); to resume, build the optimizer and the schedule, then load both state dicts (the optimizer's carries the
groups' lrs).

Example::

    opt = rc.optim.SGD(model, lr=0.1)
    sched = rc.optim.lr.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(model, opt)     # ... opt.step() per batch
        sched.step()
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .._validation import (
    ScheduleCheck,
    choice,
    hyper_non_negative,
    hyper_number,
    lr_lambdas,
    non_negative_int,
    per_group_numbers,
    positive_int,
    schedule_best,
    schedule_check,
    schedule_count,
    schedule_factor,
    schedule_lrs,
    schedule_metric,
    schedule_milestones,
    schedule_optimizer,
    schedule_state,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from . import Optimizer

    LrLambda = Callable[[int], float]

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "LambdaLR",
           "ReduceLROnPlateau"]


class LRScheduler:
    """What every schedule shares: the optimizer, ``base_lrs`` (each group's ``initial_lr``), ``last_epoch``,
    ``get_last_lr()`` and the ``state_dict`` plumbing. A subclass lists its own arguments in ``_arguments`` (saved in
    the state dict, in constructor order), each with its check, which the constructor (``_set_arguments``) and
    ``load_state_dict`` both apply, and computes the next rates in ``_next_lrs`` (``initial`` is True for the step
    the constructor makes, epoch 0)."""

    _arguments: ClassVar[dict[str, ScheduleCheck]] = {}
    _argument_names: ClassVar[dict[str, str]] = {}  # state entry -> constructor argument, where the names differ
    _counters: ClassVar[dict[str, ScheduleCheck]] = {  # the rest of the state dict, checked on load
        "base_lrs": schedule_lrs, "last_epoch": schedule_count, "last_lr": schedule_lrs, "step_count": schedule_count}

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = schedule_optimizer(type(self).__name__, optimizer)
        self.base_lrs: list[float] = [hyper_non_negative(f"param_groups[{i}]['initial_lr']",
                                                         group.get("initial_lr", group["lr"]))
                                      for i, group in enumerate(optimizer.param_groups)]  # set by hand, or loaded
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.last_epoch = -1
        self._step_count = 0
        self._step(initial=True)

    def _set_arguments(self, optimizer: Optimizer, given: dict[str, Any]) -> None:
        """The constructor's arguments (``given``: by argument name), checked by ``_arguments`` and set."""
        groups = len(schedule_optimizer(type(self).__name__, optimizer).param_groups)
        for entry, check in self._arguments.items():
            name = self._argument_names.get(entry, entry)
            setattr(self, entry, check(name, given[name], groups))

    def _lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _next_lrs(self, initial: bool) -> list[float]:
        raise NotImplementedError

    def _step(self, initial: bool = False) -> None:
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self._next_lrs(initial)):
            group["lr"] = lr
        self._last_lr = self._lrs()

    def step(self) -> None:
        """Advances one epoch and sets every group's lr (call it after ``opt.step()``)."""
        if self._step_count == 1 and self.optimizer._steps_taken == 0:
            warnings.warn(f"{type(self).__name__}.step() was called before the optimizer's step(): call "
                          "opt.step() first, or the schedule's first learning rate is skipped (as in torch)",
                          UserWarning, stacklevel=2)
        self._step()

    def get_last_lr(self) -> list[float]:
        """The learning rates this schedule last set, one per parameter group (a new list)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """``{"scheduler": class name, its arguments..., "base_lrs", "last_epoch", "last_lr", ...}``: plain numbers
        and lists (no functions, no optimizer)."""
        return {"scheduler": type(self).__name__, **self._state()}

    def _state(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self._arguments}
        state.update(base_lrs=list(self.base_lrs), last_epoch=self.last_epoch, last_lr=list(self._last_lr),
                     step_count=self._step_count)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what ``state_dict()`` returned (load the optimizer's state dict too: it holds the groups' lrs).
        A state of another schedule, other entries, a different number of groups or an entry its constructor would
        reject (``step_size=0``, a negative lr, ...) raises before anything changes."""
        state = schedule_state(state_dict, type(self).__name__, {**self._arguments, **self._counters},
                               len(self.optimizer.param_groups))
        self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        for name in self._arguments:
            setattr(self, name, state[name])
        self.base_lrs = list(state["base_lrs"])
        self.last_epoch = state["last_epoch"]
        self._last_lr = list(state["last_lr"])
        self._step_count = state["step_count"]

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._arguments)
        return f"{type(self).__name__}({args}{', ' if args else ''}last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiplies every group's lr by ``gamma`` every ``step_size`` epochs: ``lr = base_lr * gamma ** (epoch //
    step_size)`` (applied recursively to the current lr, as torch)."""

    _arguments = {"step_size": schedule_check(positive_int), "gamma": schedule_check(hyper_non_negative)}
    step_size: int
    gamma: float

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self._set_arguments(optimizer, {"step_size": step_size, "gamma": gamma})
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]


class MultiStepLR(LRScheduler):
    """Multiplies every group's lr by ``gamma`` at each epoch in ``milestones`` (by ``gamma ** n`` for a milestone
    listed ``n`` times)."""

    _arguments = {"milestones": schedule_milestones, "gamma": schedule_check(hyper_non_negative)}
    milestones: list[int]
    gamma: float

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self._set_arguments(optimizer, {"milestones": milestones, "gamma": gamma})
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        count = Counter(self.milestones)[self.last_epoch]
        if count == 0:
            return self._lrs()
        return [lr * self.gamma ** count for lr in self._lrs()]


class ExponentialLR(LRScheduler):
    """Multiplies every group's lr by ``gamma`` every epoch: ``lr = base_lr * gamma ** epoch``."""

    _arguments = {"gamma": schedule_check(hyper_non_negative)}
    gamma: float

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self._set_arguments(optimizer, {"gamma": gamma})
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        if initial:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from each group's ``base_lr`` down to ``eta_min`` over ``T_max`` epochs (without restarts:
    past ``T_max`` the lr climbs back, a cosine of period ``2 T_max``)::

        lr(epoch) = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2

    computed with torch's recursion from the current lr."""

    _arguments = {"T_max": schedule_check(positive_int), "eta_min": schedule_check(hyper_non_negative)}
    T_max: int
    eta_min: float

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (torch's name)
        self._set_arguments(optimizer, {"T_max": T_max, "eta_min": eta_min})
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        if initial:
            return self._lrs()
        epoch, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                    for lr, base_lr in zip(self._lrs(), self.base_lrs)]
        return [(1 + math.cos(math.pi * epoch / t_max)) / (1 + math.cos(math.pi * (epoch - 1) / t_max))
                * (lr - eta_min) + eta_min for lr in self._lrs()]


class LinearLR(LRScheduler):
    """Linear warm-up (or decay): the lr factor goes from ``start_factor`` at epoch 0 to ``end_factor`` at epoch
    ``total_iters`` in equal steps, then stays: ``lr = base_lr * (start + (end - start) * min(epoch, total_iters) /
    total_iters)``. ``0 < start_factor <= 1``, ``0 <= end_factor <= 1`` (torch's bounds)."""

    _arguments = {"start_factor": schedule_check(schedule_factor, allow_zero=False),
                  "end_factor": schedule_check(schedule_factor, allow_zero=True),
                  "total_iters": schedule_check(positive_int)}
    start_factor: float
    end_factor: float
    total_iters: int

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5) -> None:
        self._set_arguments(optimizer, {"start_factor": start_factor, "end_factor": end_factor,
                                        "total_iters": total_iters})
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._lrs()]
        if self.last_epoch > self.total_iters:
            return self._lrs()
        start, end = self.start_factor, self.end_factor
        return [lr * (1.0 + (end - start) / (self.total_iters * start + (self.last_epoch - 1) * (end - start)))
                for lr in self._lrs()]


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``: one function for every group, or a list with one per group. The
    functions are not part of ``state_dict()``: a resumed schedule uses the ones it was built with."""

    def __init__(self, optimizer: Optimizer, lr_lambda: LrLambda | Sequence[LrLambda]) -> None:
        groups = len(schedule_optimizer(type(self).__name__, optimizer).param_groups)
        self.lr_lambdas: list[LrLambda] = lr_lambdas(lr_lambda, groups)
        super().__init__(optimizer)

    def _next_lrs(self, initial: bool) -> list[float]:
        return [base_lr * hyper_number(f"lr_lambda({self.last_epoch})", fn(self.last_epoch))
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class ReduceLROnPlateau(LRScheduler):
    """Multiplies every group's lr by ``factor`` (not below its ``min_lr``) when the metric given to
    ``step(metrics)`` has not improved for more than ``patience`` epochs — torch's rules:

    * improved: ``metrics < best * (1 - threshold)`` (mode "min", threshold_mode "rel"), ``< best - threshold``
      ("abs"); mode "max": ``> best * (1 + threshold)`` / ``> best + threshold``. An improvement sets ``best`` and
      zeroes ``num_bad_epochs``; anything else (NaN included) adds one;
    * during ``cooldown`` epochs after a reduction bad epochs are not counted;
    * once ``num_bad_epochs > patience``: ``lr = max(lr * factor, min_lr)`` for each group (skipped when the change
      is at most ``eps``), then the cooldown starts and ``num_bad_epochs`` is zeroed.

    ``min_lr``: one number, or a list with one per group. Building it does not change the lrs."""

    _arguments = {"mode": schedule_check(choice, options=("min", "max")),
                  "factor": schedule_check(schedule_factor, allow_zero=True, allow_one=False),
                  "patience": schedule_check(non_negative_int),
                  "threshold": schedule_check(hyper_non_negative),
                  "threshold_mode": schedule_check(choice, options=("rel", "abs")),
                  "cooldown": schedule_check(non_negative_int),
                  "min_lrs": per_group_numbers,
                  "eps": schedule_check(hyper_non_negative)}
    _argument_names = {"min_lrs": "min_lr"}
    _counters = {**LRScheduler._counters, "best": schedule_best, "num_bad_epochs": schedule_check(non_negative_int),
                 "cooldown_counter": schedule_check(non_negative_int)}
    mode: str
    factor: float
    patience: int
    threshold: float
    threshold_mode: str
    cooldown: int
    min_lrs: list[float]
    eps: float

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8) -> None:
        self._set_arguments(optimizer, {"mode": mode, "factor": factor, "patience": patience, "threshold": threshold,
                                        "threshold_mode": threshold_mode, "cooldown": cooldown, "min_lr": min_lr,
                                        "eps": eps})
        self.optimizer = optimizer
        self.base_lrs = self._lrs()
        self.last_epoch = 0
        self._step_count = 0
        self._last_lr = self._lrs()
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, current: float) -> bool:
        if self.mode == "min":
            return current < (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                              else self.best - self.threshold)
        return current > (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                          else self.best + self.threshold)

    def step(self, metrics: float) -> None:  # type: ignore[override]  # torch's signature: the metric is required
        """Records one epoch's ``metrics`` (a real number, e.g. the validation loss) and reduces the lrs when it has
        stopped improving."""
        current = schedule_metric(metrics)
        self._step_count += 1
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._lrs()

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state.update(best=self.best, num_bad_epochs=self.num_bad_epochs, cooldown_counter=self.cooldown_counter)
        return state

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self.best = state["best"]
        self.num_bad_epochs = state["num_bad_epochs"]
        self.cooldown_counter = state["cooldown_counter"]
