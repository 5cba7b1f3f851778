"""Losses that return their gradient: ``loss, dinput = f(...)``, ready to pass to the producing layer's backward.

``reduction``: ``"mean"`` (the default; divides by the number of positions that count), ``"sum"``, or ``"none"``
(the per-position loss array; the returned gradient is then that of the array's sum, i.e. unscaled). Scalar losses
are returned as Python floats; gradients have the input's shape and dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from ._validation import (
    choice,
    exact_class_targets,
    float_array,
    index_array,
    label_smoothing_value,
    logits_array,
    mask_array,
    probability_targets,
)
from .ops.decoding import (
    softmax_cross_entropy_checked as softmax_cross_entropy_rows,
    softmax_cross_entropy_if_classes,  # (the fast path: targets checked by the kernel)
)

if TYPE_CHECKING:
    import numpy.typing as npt

_REDUCTIONS = ("mean", "sum", "none")


# The loss is a float for "mean" and "sum", the per-position array for "none".
@overload
def softmax_cross_entropy(logits: np.ndarray, targets: npt.ArrayLike, mask: npt.ArrayLike | None = None,
                          reduction: Literal["mean", "sum"] = "mean", label_smoothing: float = 0.0
                          ) -> tuple[float, np.ndarray]: ...
@overload
def softmax_cross_entropy(logits: np.ndarray, targets: npt.ArrayLike, mask: npt.ArrayLike | None = None, *,
                          reduction: Literal["none"], label_smoothing: float = 0.0
                          ) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def softmax_cross_entropy(logits: np.ndarray, targets: npt.ArrayLike, mask: npt.ArrayLike | None = None,
                          reduction: str = "mean", label_smoothing: float = 0.0
                          ) -> tuple[float | np.ndarray, np.ndarray]: ...
def softmax_cross_entropy(logits: np.ndarray, targets: npt.ArrayLike, mask: npt.ArrayLike | None = None,
                          reduction: str = "mean", label_smoothing: float = 0.0
                          ) -> tuple[float | np.ndarray, np.ndarray]:
    """Cross-entropy of ``softmax(logits)`` against class ``targets`` — torch.nn.functional.cross_entropy with the
    classes on the last axis, and ``mask`` in place of ``ignore_index``.

    - ``logits [..., C]`` float32/float64.
    - ``targets``: integer classes ``[...]`` in 0..C-1 (at masked positions anything), or class probabilities
      ``[..., C]`` of the logits' dtype (e.g. one-hot rows; loss ``-sum_c q_c log softmax(logits)_c``).
    - ``mask [...]`` (optional; bool or 0/1, broadcastable to the positions ``[...]``): True/1 = the position
      counts, False/0 = excluded (no loss, no gradient — e.g. padding in a batch of sequences).
    - ``reduction="mean"`` divides by the number of counted positions (none counted: loss 0 and zero gradient).
    - ``label_smoothing`` ε in [0, 1] (torch's): the target distribution becomes ``q = (1-ε) target + ε/C``, with
      ``target`` the one-hot row of a class index or the given probabilities.
    Returns ``(loss, dlogits)``: loss a float (an array of the positions' shape, 0 at excluded positions, for
    "none"), and ``dlogits = (softmax(logits) * sum_c q_c - q) * mask`` scaled as the reduction says.
    Computed stably (log-sum-exp with the row maximum subtracted) in the logits' dtype; class indices in one C++ pass
    per row (``rnncore.ops.softmax_cross_entropy``).
    """
    if exact_class_targets(logits, targets, mask, reduction, label_smoothing):  # a training loop's call, checked fast
        # private copies (the kernel reads them without the GIL); a kept target outside 0..C-1 -> the checks below
        t = np.array(targets, order="C").reshape(-1)
        keep = None if mask is None else np.array(mask, dtype=np.uint8, order="C").reshape(-1)
        result = softmax_cross_entropy_if_classes(logits.reshape(-1, logits.shape[-1]), t, keep, label_smoothing)
        if result is not None:
            return _reduced(*result, None if keep is None else keep.view(np.bool_), reduction, logits.shape)
    reduction = choice("reduction", reduction, _REDUCTIONS)
    eps = label_smoothing_value(label_smoothing)
    logits = logits_array(logits)
    classes = logits.shape[-1]
    positions = logits.shape[:-1]
    keep = None if mask is None else mask_array("mask", mask, positions)
    probs = probability_targets(targets, logits)
    rows = logits.reshape(-1, classes)
    dtype = logits.dtype
    if probs is None:  # class indices: one C++ pass per row (rnncore.ops.softmax_cross_entropy)
        # the kernel reads the mask and targets without the GIL: private copies, the targets checked against the copy
        if keep is not None:
            keep = np.array(keep, dtype=np.uint8).view(np.bool_)
        t = index_array("targets", targets, classes, shape=positions, where=keep, letter="C").reshape(-1)
        k = None if keep is None else keep.reshape(-1)
        per_position, grad = softmax_cross_entropy_rows(np.ascontiguousarray(rows), t,
                                                        None if k is None else k.view(np.uint8), eps)
        return _reduced(per_position, grad, k, reduction, logits.shape)
    k = None if keep is None else keep.reshape(-1)
    if k is not None:
        rows = np.where(k[:, None], rows, 0)  # never let excluded logits (NaN, inf) leak into the result
    shifted = rows - rows.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1)
    grad = exps / sums[:, None]
    q = probs.reshape(-1, classes)
    if k is not None:
        q = np.where(k[:, None], q, 0)
    if eps:
        q = (1 - dtype.type(eps)) * q + dtype.type(eps / classes)
    log_softmax = shifted - np.log(sums)[:, None]
    per_position = -(q * log_softmax).sum(axis=1)
    grad = grad * q.sum(axis=1, keepdims=True) - q
    if k is not None:
        per_position *= k
        grad *= k[:, None]
    return _reduced(per_position, grad, k, reduction, logits.shape)


def _reduced(per_position: np.ndarray, grad: np.ndarray, k: np.ndarray | None, reduction: str,
             shape: tuple[int, ...]) -> tuple[float | np.ndarray, np.ndarray]:
    """The cross-entropy's reduction of its per-position losses [N] (0 where excluded) and gradient [N, C] (that of
    their sum), returned in the logits' ``shape``."""
    dtype = grad.dtype
    if reduction == "none":
        return per_position.reshape(shape[:-1]).astype(dtype, copy=False), grad.reshape(shape)
    count = per_position.size if k is None else int(np.count_nonzero(k))
    total = float(per_position.sum(dtype=np.float64))
    if reduction == "sum":
        return total, grad.reshape(shape)
    if count == 0:
        return 0.0, np.zeros(shape, dtype)
    grad *= dtype.type(1.0 / count)
    return total / count, grad.reshape(shape)


@overload
def mse(pred: np.ndarray, target: np.ndarray, reduction: Literal["mean", "sum"] = "mean"
        ) -> tuple[float, np.ndarray]: ...
@overload
def mse(pred: np.ndarray, target: np.ndarray, reduction: Literal["none"]) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def mse(pred: np.ndarray, target: np.ndarray, reduction: str = "mean") -> tuple[float | np.ndarray, np.ndarray]: ...
def mse(pred: np.ndarray, target: np.ndarray, reduction: str = "mean") -> tuple[float | np.ndarray, np.ndarray]:
    """Mean squared error ``(pred - target)**2`` over every element (torch.nn.functional.mse_loss).

    ``pred`` and ``target`` are float arrays of the same shape and dtype. Returns ``(loss, dpred)``: for "mean" the
    average (an empty array gives 0 and an empty gradient) with ``dpred = 2 (pred - target) / N``; "sum" the total
    with ``dpred = 2 (pred - target)``; "none" the element-wise array with the same unscaled gradient.
    """
    reduction = choice("reduction", reduction, _REDUCTIONS)
    pred = float_array("pred", pred, None)
    target = float_array("target", target, [(f"d{k}", n) for k, n in enumerate(pred.shape)], pred.dtype)
    diff = pred - target
    if reduction == "none":
        return diff * diff, 2 * diff
    total = float(np.sum(diff * diff, dtype=np.float64))
    if reduction == "sum":
        return total, 2 * diff
    n = diff.size
    if n == 0:
        return 0.0, diff
    return total / n, diff * pred.dtype.type(2.0 / n)
