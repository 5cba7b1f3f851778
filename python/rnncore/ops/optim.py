"""The fused optimizer step: ``adam_update`` runs Adam (or AdamW) over many parameter arrays in one C++ call.

It is ``rnncore.optim.Adam``'s per-parameter NumPy update (torch's single-tensor algorithm) statement for statement,
so the two give the same bits (tests/test_optim_fused.py); ``rnncore.optim.Adam.step`` calls it once per group and
keeps the NumPy update for arrays it does not take (strided, mixed dtypes). Twin: that NumPy update
(``rnncore.optim.Adam._update``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _core
from .._validation import adam_arrays, flag, hyper_betas, hyper_non_negative

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

__all__ = ["adam_update"]


def adam_update(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], exp_avgs: Sequence[np.ndarray],
                exp_avg_sqs: Sequence[np.ndarray], max_exp_avg_sqs: Sequence[np.ndarray] | None,
                steps: Sequence[np.ndarray], lr: float, betas: tuple[float, float], eps: float,
                weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                decoupled: bool = False) -> None:
    """One Adam step of every parameter ``params[i]``, in place (``rnncore.optim.Adam`` documents the update;
    ``decoupled=True`` is AdamW's weight decay). Per parameter: ``grads[i]``, ``exp_avgs[i]``, ``exp_avg_sqs[i]``
    and with ``amsgrad`` ``max_exp_avg_sqs[i]`` of its shape and dtype (float32 or float64), ``steps[i]`` a 0-d
    array of that dtype (incremented first); every array a C-contiguous ndarray, the updated ones writeable.
    Anything else raises (TypeError / ValueError naming the argument and index) before any array changes."""
    lr, eps, weight_decay = (hyper_non_negative(n, v) for n, v in (("lr", lr), ("eps", eps),
                                                                  ("weight_decay", weight_decay)))
    beta1, beta2 = hyper_betas("betas", betas)
    amsgrad, maximize, decoupled = flag("amsgrad", amsgrad), flag("maximize", maximize), flag("decoupled", decoupled)
    lists = adam_arrays(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, amsgrad)
    out = _core.adam_update(*lists, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled)
    if out is NotImplemented:
        raise RuntimeError("rnncore internal error: _core.adam_update refused arguments that passed validation")
