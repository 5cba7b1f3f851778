"""Optimizers that update rnncore parameters in place: ``SGD``, ``RMSprop``, ``Adam``, ``AdamW``; learning-rate
schedules in ``rnncore.optim.lr``.

Each follows the single-tensor (``foreach=False``) algorithm of the ``torch.optim`` class of the same name, with the
same constructor arguments and defaults (``SGD`` requires ``lr``), so the same hyper-parameters and gradients give
the same parameters (float32 arithmetic stays float32, as in torch).

``params`` is one of:

* a model with ``parameters()`` and ``gradients()`` (``rnncore.LSTM``, an ``rnncore.Module``...): ``step()`` reads
  ``model.gradients()`` and ``opt.zero_grad()`` zeroes them. At every step only ``model.trainable_parameters()``
  are updated (when the model has that method; frozen parameters get no update and no state, as torch skips
  parameters whose grad is None);
* a dict name -> ndarray: ``step(grads)`` needs a dict of gradients with the same keys and shapes;
* a list of parameter groups (torch's): ``[{"params": model.encoder, "lr": 1e-4}, {"params": model.head}]``, each
  ``"params"`` a model or a dict, its other keys overriding the constructor's hyper-parameters for that group.
  Parameter names are then prefixed with the group's index (``"0.weight_ih_l0"``, ``"1.weight"``) in ``state``,
  ``state_dict()`` and ``step(grads)``; the two other forms keep the names as they are.

Every parameter array is updated in place, never rebound, so the model sees the new values.

``opt.param_groups`` is a list of dicts, one per group: ``"params"`` (name -> array, for reading) and the group's
hyper-parameters, which may be changed between steps (``opt.param_groups[0]["lr"] = 1e-4``; the schedules of
``rnncore.optim.lr`` do that). With a single group each hyper-parameter is also an attribute (``opt.lr = 1e-4``).
They are re-validated at every ``step``. ``state_dict()`` / ``load_state_dict()`` save and restore the groups'
hyper-parameters and the per-parameter state (copies), keyed by parameter name.

Example::

    import rnncore as rc
    lstm = rc.LSTM(3, 4)
    opt = rc.optim.Adam(lstm, lr=1e-3)
    y, _ = lstm(x); opt.zero_grad(); lstm.backward(dloss_dy); opt.step()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import _core
from .._validation import (
    flag,
    hyper_betas,
    hyper_non_negative,
    hyper_number,
    nesterov_combination,
    optimizer_gradients,
    optimizer_group_keys,
    optimizer_group_spec,
    optimizer_groups_distinct,
    optimizer_parameters,
    optimizer_state_arrays,
    optimizer_state_groups,
    optimizer_state_header,
    optimizer_trainable_names,
    optimizer_zero_grad_models,
    same_keys,
)
from ..module import Module

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Union

    import numpy.typing as npt

    from ..module import Model

    # A model (its parameters() and gradients()), a dict name -> parameter array, or a list of parameter groups
    # (dicts with "params": a model or a dict, plus hyper-parameter overrides).
    Params = Union[Mapping[str, np.ndarray], Model, Sequence[Mapping[str, Any]]]

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "lr"]


# -- the shared base ------------------------------------------------------------------------------------------------
class Optimizer:
    """What every optimizer shares: parameter groups, resolving ``params`` and ``grads``, hyper-parameter
    validation, frozen parameters, per-parameter state and its ``state_dict`` plumbing. A subclass lists its
    hyper-parameters in ``_hyper`` (name -> checker, constructor order), may add cross-argument checks in
    ``_check_combination``, names its state arrays in ``_state_keys`` and implements the update rule for one
    parameter in ``_update``."""

    _hyper: dict[str, Callable[[str, Any], Any]] = {}
    _state_keys: tuple[str, ...] = ()

    def __init__(self, params: Params, **defaults: Any) -> None:
        defaults = self._checked(defaults)
        # one (model or None, {name: array}, overrides) per group; names prefixed "<index>." in the list form
        if isinstance(params, (list, tuple)):
            if len(params) == 0:
                raise ValueError("optimizer got an empty list of parameter groups")
            specs = [optimizer_group_spec(i, group, self._hyper) for i, group in enumerate(params)]
            resolved = [(model, {f"{i}.{name}": p for name, p in arrays.items()}, overrides)
                        for i, (model, arrays, overrides) in enumerate(specs)]
        else:
            model, arrays = optimizer_parameters(params)
            resolved = [(model, arrays, {})]
        optimizer_groups_distinct([arrays for _, arrays, _ in resolved])
        self._prefixed = isinstance(params, (list, tuple))
        self._models: list[Any] = [model for model, _, _ in resolved]
        self.param_groups: list[dict[str, Any]] = []
        for i, (_, arrays, overrides) in enumerate(resolved):
            hyper = self._checked({**defaults, **overrides}, f"param_groups[{i}]")
            self.param_groups.append({"params": arrays, **hyper})
        self._group_params = [group["params"] for group in self.param_groups]  # to detect a replaced "params"
        self.state: dict[str, dict[str, np.ndarray]] = {name: {} for name in self.parameters()}
        self._steps_taken = 0  # read by the schedules: scheduler.step() before any opt.step() warns, as in torch

    # hyper-parameters ---------------------------------------------------------------------------------------------
    def _checked(self, hyper: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        context = f"{type(self).__name__} hyper-parameters" + (f" of {where}" if where else "")
        same_keys(context, self._hyper, hyper)
        checked = {key: check(key, hyper[key]) for key, check in self._hyper.items()}
        self._check_combination(checked)
        return checked

    def _check_combination(self, h: dict[str, Any]) -> None:
        """Checks across hyper-parameters (a subclass's); raises ValueError."""

    def _single_group(self, what: str) -> dict[str, Any]:
        groups = self.__dict__.get("param_groups")
        if groups is None:  # during unpickling, before __dict__ is filled
            raise AttributeError(what)
        if len(groups) != 1:
            raise AttributeError(f"{type(self).__name__} has {len(groups)} parameter groups, each with its own "
                                 f"{what}: use opt.param_groups[i][{what!r}]")
        group: dict[str, Any] = groups[0]
        return group

    def __getattr__(self, name: str) -> Any:
        """A single group's hyper-parameters read as attributes: ``opt.lr`` is ``opt.param_groups[0]["lr"]``."""
        if name == "hyperparameters":  # the property raised (several groups): say why
            self._single_group(name)
        if name.startswith("_") or name not in type(self)._hyper:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._single_group(name)[name]

    def __setattr__(self, name: str, value: Any) -> None:
        """``opt.lr = 1e-4`` sets ``opt.param_groups[0]["lr"]`` (validated at the next step); several groups raise."""
        if name in type(self)._hyper:
            self._single_group(name)[name] = value
        else:
            object.__setattr__(self, name, value)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The single group's hyper-parameters, name -> value (a copy); several groups: see ``param_groups``."""
        group = self._single_group("hyperparameters")
        return {key: group[key] for key in self._hyper}

    # parameters and gradients -------------------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> the parameter arrays this optimizer updates (the arrays themselves), all groups."""
        return {name: p for group in self.param_groups for name, p in group["params"].items()}

    def _trainable(self) -> list[list[str]]:
        """Per group, the names to update this step: a model's ``trainable_parameters()`` (when it has the method),
        else every parameter of the group."""
        names = []
        for i, (model, group) in enumerate(zip(self._models, self.param_groups)):
            if model is not None and callable(getattr(model, "trainable_parameters", None)):
                prefix = f"{i}." if self._prefixed else ""
                names.append(optimizer_trainable_names(i, model, group["params"], prefix))
            else:
                names.append(list(group["params"]))
        return names

    def zero_grad(self) -> None:
        """Zeroes the gradients of the model(s) the optimizer was built over (``model.zero_grad()``). An optimizer
        built from a dict of parameters has no model: its gradients are the caller's, passed to ``step(grads)``."""
        for model in optimizer_zero_grad_models(self._models):
            model.zero_grad()

    # the step -----------------------------------------------------------------------------------------------------
    def step(self, grads: Mapping[str, npt.ArrayLike] | None = None) -> None:
        """One update of every trainable parameter, in place. ``grads``: dict name -> gradient (the optimizer's
        names and the parameters' shapes; frozen parameters may be left out); omitted, each model's
        ``gradients()`` are used (models only). Everything is validated before any parameter changes."""
        hypers = [self._group_hyper(i, group) for i, group in enumerate(self.param_groups)]
        trainable, resolved = self._names_and_gradients(grads)
        for group, h, names in zip(self.param_groups, hypers, trainable):
            group.update(h)  # normalized (e.g. ints -> float)
            self._update_group(group["params"], names, resolved, h)
        self._last_hyper = hypers
        self._steps_taken += 1

    def _group_hyper(self, index: int, group: dict[str, Any]) -> dict[str, Any]:
        """The group's checked hyper-parameters: the last step's when the group still holds those very values (the
        step stored its normalized, immutable values there), else each checked again."""
        optimizer_group_keys(index, group, self._hyper, self._group_params, len(self.param_groups))
        last = self.__dict__.get("_last_hyper")
        if last is not None and len(last) == len(self.param_groups):
            previous = last[index]
            if all(group[key] is value for key, value in previous.items()):
                return previous
        return self._checked({key: group[key] for key in self._hyper}, f"param_groups[{index}]")

    def _names_and_gradients(self, grads: Mapping[str, npt.ArrayLike] | None
                             ) -> tuple[list[list[str]], dict[str, np.ndarray]]:
        """Per group the names to update this step, and name -> gradient for them, checked
        (``optimizer_gradients``). Without ``grads``, when every model is an rnncore Module with the base class's
        trainable_parameters and gradients: both from the models' walks (one each), and the last step's answer while
        those walks are the ones it was made from (the trees kept their shape: ``Module._walk``)."""
        models = self._models
        walks = None
        if grads is None and all(isinstance(m, Module) and type(m).trainable_parameters is
                                 Module.trainable_parameters and type(m).gradients is Module.gradients
                                 for m in models):
            walks = [model._walk() for model in models]
            memo = self.__dict__.get("_walk_memo")
            if memo is not None and len(memo[0]) == len(walks) and all(a is b for a, b in zip(memo[0], walks)):
                return memo[1], memo[2]
        if walks is None:
            trainable = self._trainable()
            return trainable, optimizer_gradients(self.param_groups, trainable, grads, models, self._prefixed)
        trainable, model_grads = self._trainable_and_gradients()
        resolved = optimizer_gradients(self.param_groups, trainable, model_grads, models, self._prefixed)
        self._walk_memo = (walks, trainable, resolved)
        return trainable, resolved

    def _trainable_and_gradients(self) -> tuple[list[list[str]], dict[str, np.ndarray]]:
        """``_trainable()`` and every model's gradients under the optimizer's names, from one walk of each model
        (rnncore Modules with the base class's trainable_parameters and gradients)."""
        names, grads = [], {}
        for i, (model, group) in enumerate(zip(self._models, self.param_groups)):
            prefix = f"{i}." if self._prefixed else ""
            trainable, gradients = model._trainable_and_gradients()
            names.append(optimizer_trainable_names(i, model, group["params"], prefix, trainable))
            grads.update({prefix + name: g for name, g in gradients.items()})
        return names, grads

    def _update_group(self, params: dict[str, np.ndarray], names: list[str], grads: Mapping[str, np.ndarray],
                      h: dict[str, Any]) -> None:
        """Updates the parameters ``names`` of one group: ``_update`` on each (a subclass may fuse them)."""
        for name in names:
            self._update(params[name], grads[name], self.state[name], h)

    def _update(self, p: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _buffer(state: dict[str, np.ndarray], key: str, p: np.ndarray, shape: tuple[int, ...] | None = None
                ) -> np.ndarray:
        """``state[key]``, created as zeros (the parameter's dtype; ``shape`` defaults to the parameter's)."""
        if key not in state:
            state[key] = np.zeros(p.shape if shape is None else shape, dtype=p.dtype)
        return state[key]

    @classmethod
    def _count_step(cls, state: dict[str, np.ndarray], p: np.ndarray) -> float:
        """Increments the step count (a 0-d array of the parameter's dtype, like torch's float step tensor) and
        returns it as a Python float."""
        step = cls._buffer(state, "step", p, shape=())
        step += 1
        return float(step)

    # state_dict ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"optimizer": class name, "param_groups": [{hyper-parameters..., "params": [names]}], "state": {param
        name: {state name: array}}}`` (torch's layout, with names for torch's indices) with copies of every state
        array (``step`` is a 0-d array; a parameter never updated, e.g. frozen, has ``{}``)."""
        return {
            "optimizer": type(self).__name__,
            "param_groups": [{**{key: value for key, value in group.items() if key != "params"},
                              "params": list(group["params"])} for group in self.param_groups],
            "state": {name: {key: a.copy() for key, a in s.items()} for name, s in self.state.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what ``state_dict()`` returned (each group's hyper-parameters, and the state, copied into the
        parameters' dtypes). A wrong optimizer, other groups or parameter names, unknown state names or misshaped
        arrays raise before anything changes."""
        optimizer_state_header(state_dict, type(self).__name__)
        saved = optimizer_state_groups(state_dict["param_groups"], self.param_groups, self._hyper)
        hypers = [self._checked({key: group[key] for key in self._hyper}, f"param_groups[{i}]")
                  for i, group in enumerate(saved)]
        new_state = optimizer_state_arrays(state_dict["state"], self.parameters(), self._state_keys)
        for group, saved_group, h in zip(self.param_groups, saved, hypers):
            group.update(h)
            group.pop("initial_lr", None)
            if "initial_lr" in saved_group:  # set by a schedule (rnncore.optim.lr), restored with the groups
                group["initial_lr"] = saved_group["initial_lr"]
        self.state = new_state

    def __repr__(self) -> str:
        def args(group: dict[str, Any]) -> str:
            return ", ".join(f"{k}={group[k]!r}" for k in self._hyper)

        if len(self.param_groups) == 1:
            return f"{type(self).__name__}({args(self.param_groups[0])})"
        lines = [f"param_groups[{i}] ({len(g['params'])} parameter{'s' * (len(g['params']) != 1)}): {args(g)}"
                 for i, g in enumerate(self.param_groups)]
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _lerp_(a: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``a.lerp_(end, weight)`` as torch computes it (the two formulas, switched at weight 0.5)."""
    if weight < 0.5:
        a += weight * (end - a)
    else:
        a[...] = end - (end - a) * (1.0 - weight)


# -- the optimizers -------------------------------------------------------------------------------------------------
class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum — ``torch.optim.SGD``.

    Per parameter ``θ`` with gradient ``g`` (λ = weight_decay, μ = momentum, τ = dampening, γ = lr)::

        g ← -g                      if maximize
        g ← g + λ θ                 if λ ≠ 0
        if μ ≠ 0:
            b ← g                   at the first step (no dampening then), else  b ← μ b + (1 - τ) g
            g ← g + μ b             if nesterov, else  g ← b
        θ ← θ - γ g

    State per parameter: ``momentum_buffer`` (only when μ ≠ 0, from the first step on).
    Nesterov needs μ > 0 and τ = 0 (as torch).
    """

    _hyper = {"lr": hyper_non_negative, "momentum": hyper_non_negative, "dampening": hyper_number,
              "weight_decay": hyper_non_negative, "nesterov": flag, "maximize": flag}
    _state_keys = ("momentum_buffer",)

    def __init__(self, params: Params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize)

    def _check_combination(self, h: dict[str, Any]) -> None:
        nesterov_combination(h)

    def _update(self, p: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        g = -grad if h["maximize"] else grad
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p
        momentum = h["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1.0 - h["dampening"]) * g
            g = g + momentum * buf if h["nesterov"] else buf
        p -= h["lr"] * g


class RMSprop(Optimizer):
    r"""RMSprop — ``torch.optim.RMSprop``.

    Per parameter ``θ`` with gradient ``g`` (α = alpha, ε = eps, λ = weight_decay, μ = momentum, γ = lr);
    ``v``, ``ḡ``, ``b`` start at zero::

        g ← -g                          if maximize
        g ← g + λ θ                     if λ ≠ 0
        v ← α v + (1 - α) g²
        if centered:  ḡ ← α ḡ + (1 - α) g  (lerp),   d ← √(v - ḡ²) + ε
        else:                                       d ← √v + ε
        if μ > 0:  b ← μ b + g / d,   θ ← θ - γ b
        else:      θ ← θ - γ g / d

    State per parameter: ``step``, ``square_avg`` (v), ``grad_avg`` (ḡ, centered only), ``momentum_buffer``
    (b, μ > 0 only).
    """

    _hyper = {"lr": hyper_non_negative, "alpha": hyper_non_negative, "eps": hyper_non_negative,
              "weight_decay": hyper_non_negative, "momentum": hyper_non_negative, "centered": flag,
              "maximize": flag}
    _state_keys = ("step", "square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params: Params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered, maximize=maximize)

    def _update(self, p: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        self._count_step(state, p)
        square_avg = self._buffer(state, "square_avg", p)
        g = -grad if h["maximize"] else grad
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p
        alpha = h["alpha"]
        square_avg *= alpha
        square_avg += (1.0 - alpha) * g * g
        if h["centered"]:
            grad_avg = self._buffer(state, "grad_avg", p)
            _lerp_(grad_avg, g, 1.0 - alpha)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += h["eps"]
        if h["momentum"] > 0:
            buf = self._buffer(state, "momentum_buffer", p)
            buf *= h["momentum"]
            buf += g / avg
            p -= h["lr"] * buf
        else:
            p += (-h["lr"]) * g / avg


class Adam(Optimizer):
    r"""Adam (optionally AMSGrad) with L2 weight decay added to the gradient — ``torch.optim.Adam``.

    Per parameter ``θ`` with gradient ``g`` at step ``t`` = 1, 2, ... (β₁, β₂ = betas, ε = eps,
    λ = weight_decay, γ = lr); ``m``, ``v``, ``v̂max`` start at zero::

        g ← -g                              if maximize
        g ← g + λ θ                         if λ ≠ 0      (AdamW instead: θ ← θ (1 - γ λ))
        m ← β₁ m + (1 - β₁) g               (torch's lerp)
        v ← β₂ v + (1 - β₂) g²
        v̂max ← max(v̂max, v)                 if amsgrad (and v̂max replaces v below)
        θ ← θ - γ / (1 - β₁ᵗ) · m / (√v / √(1 - β₂ᵗ) + ε)

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (amsgrad only).

    A group's parameters are updated in one C++ call (``rnncore.ops.adam_update``: the same bits as the NumPy
    update below, which still runs when an array is not one the fused op takes, e.g. strided).
    """

    _fused = True  # False: the NumPy update for every parameter (the fused op's twin, in the tests)
    _hyper = {"lr": hyper_non_negative, "betas": hyper_betas, "eps": hyper_non_negative,
              "weight_decay": hyper_non_negative, "amsgrad": flag, "maximize": flag}
    _state_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)

    def _update_group(self, params: dict[str, np.ndarray], names: list[str], grads: Mapping[str, np.ndarray],
                      h: dict[str, Any]) -> None:
        """All of a group's parameters in one ``_core.adam_update`` call; when it refuses an array (it changes
        nothing then), the NumPy update of each parameter."""
        # a subclass that overrides _update asks for its own update: the fused op would skip it
        if self._fused and names and type(self)._update is Adam._update:
            ps = [params[name] for name in names]
            states = [self.state[name] for name in names]
            # created in the NumPy update's order (state_dict keeps it): step, exp_avg, exp_avg_sq, max_exp_avg_sq
            keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq") if h["amsgrad"] else ("step", "exp_avg",
                                                                                                  "exp_avg_sq")
            if not all(key in s for s in states for key in keys):  # a first step: make the missing buffers
                for s, p in zip(states, ps):
                    for key in keys:
                        self._buffer(s, key, p, shape=() if key == "step" else None)
            steps, ms, vs = ([s[key] for s in states] for key in keys[:3])
            vmax = [s["max_exp_avg_sq"] for s in states] if h["amsgrad"] else None
            beta1, beta2 = h["betas"]
            if _core.adam_update(ps, [grads[name] for name in names], ms, vs, vmax, steps, float(h["lr"]),
                                 float(beta1), float(beta2), float(h["eps"]), float(h["weight_decay"]),
                                 bool(h["amsgrad"]), bool(h["maximize"]), self._decoupled_weight_decay) is None:
                return
        super()._update_group(params, names, grads, h)

    def _update(self, p: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        lr, (beta1, beta2), wd = h["lr"], h["betas"], h["weight_decay"]
        step = self._count_step(state, p)
        exp_avg = self._buffer(state, "exp_avg", p)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", p)
        g = -grad if h["maximize"] else grad
        if wd != 0:
            if self._decoupled_weight_decay:
                p *= 1.0 - lr * wd
            else:
                g = g + wd * p
        _lerp_(exp_avg, g, 1.0 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * g * g
        step_size = lr / (1.0 - beta1 ** step)
        bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
        if h["amsgrad"]:
            max_sq = self._buffer(state, "max_exp_avg_sq", p)
            np.maximum(max_sq, exp_avg_sq, out=max_sq)
            denom = np.sqrt(max_sq) / bias_correction2_sqrt
        else:
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt
        denom += h["eps"]
        p += (-step_size) * exp_avg / denom


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay — ``torch.optim.AdamW``. The update is ``Adam``'s (see there),
    except that instead of adding λθ to the gradient, each step first shrinks the parameter::

        θ ← θ (1 - γ λ)

    Default ``weight_decay=1e-2``. State as Adam's.
    """

    _decoupled_weight_decay = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)


from . import lr as lr  # noqa: E402  (the schedules import Optimizer from here)
