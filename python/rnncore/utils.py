"""Gradient clipping, in place, with torch.nn.utils' rules.

``grads`` is a dict name -> gradient array (e.g. ``model.gradients()``), a model (anything with ``.gradients()``;
only the gradients of its ``trainable_parameters()`` when it has that method, so frozen parameters are neither
counted in the norm nor changed), or a list/tuple of arrays. The arrays are modified in place, so a model's own
gradient buffers get clipped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._validation import clip_gradients, real_number

if TYPE_CHECKING:
    from typing import Union

    from .module import Model

    # A dict of gradient arrays, a list/tuple of them, one array, or a model (its gradients()).
    Gradients = Union[dict[str, np.ndarray], list[np.ndarray], tuple[np.ndarray, ...], np.ndarray, Model]


def _vector_norm(v: np.ndarray, p: float) -> float:
    """The p-norm of a float32/float64 array's entries, computed in float64, without BLAS: np.linalg.norm's 2-norm
    is a BLAS dot, which wakes a multithreaded BLAS's worker threads for large gradients; they then spin on the
    cores rnncore's kernels use and slow a training loop several times over."""
    if v.size == 0:
        return 0.0
    if p == 2.0:  # squares straight into float64 (no float64 copy of v first): the same sums, 20% less time
        return math.sqrt(float(np.add.reduce(np.square(v, dtype=np.float64), axis=None)))
    v = v.astype(np.float64, copy=False)
    if p == 1.0:
        return float(np.sum(np.abs(v)))
    return float(np.sum(np.abs(v) ** p) ** (1.0 / p))


def clip_grad_norm(grads: Gradients, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
                   ) -> float:
    """Scales every gradient in place so that their joint norm is at most ``max_norm``; returns the norm before.

    torch.nn.utils.clip_grad_norm_'s rule exactly: ``total`` = the ``norm_type``-norm of all gradients taken as one
    vector (``inf``: the largest absolute entry), ``coef = max_norm / (total + 1e-6)``, and when ``coef < 1`` every
    gradient is multiplied by ``coef``. A non-finite total raises with ``error_if_nonfinite=True``; otherwise, as in
    torch, the gradients are multiplied by the (NaN or 0) coefficient.
    """
    arrays = clip_gradients(grads)
    max_norm = real_number("max_norm", max_norm, 0.0)
    norm_type = real_number("norm_type", norm_type, 0.0, allow_equal=False, allow_inf=True)
    if not arrays:
        return 0.0
    if math.isinf(norm_type):
        # np.max, not max(): a NaN anywhere must give a NaN total (max() keeps whichever it met first)
        total = float(np.max([float(np.max(np.abs(g))) if g.size else 0.0 for g in arrays]))
    else:
        # per-array norms (in float64), then the norm of those: torch's grouping
        norms = np.array([_vector_norm(g.ravel(), norm_type) for g in arrays])  # ravel: the old summation order
        total = _vector_norm(norms, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {total}, so they cannot be "
                           "clipped (set error_if_nonfinite=False to scale them anyway, as torch does)")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # coef < 1, or NaN (a NaN total spreads to every gradient, as in torch)
        for g in arrays:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value(grads: Gradients, clip_value: float) -> None:
    """Clamps every gradient entry to ``[-clip_value, clip_value]`` in place (torch.nn.utils.clip_grad_value_)."""
    arrays = clip_gradients(grads)
    clip_value = real_number("clip_value", clip_value, 0.0)
    for g in arrays:
        np.clip(g, -clip_value, clip_value, out=g)
