"""Feed-forward pieces of a training loop: ``Linear`` and ``Embedding``, with PyTorch's names, layouts and inits.

They follow the module protocol (``rnncore.Module``): parameters are NumPy arrays under torch's names (``lin.weight``),
updated in place by optimizers; every training-mode call is recorded on the module's tape, and ``backward`` takes the
calls back in reverse order (one backward per call, the last call first), returns the input gradient and accumulates
parameter gradients until ``zero_grad()``; ``state_dict``/``load_state_dict`` exchange arrays with a torch
``state_dict``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import (
    MODULE_DTYPE,
    embedding_weight,
    features_array,
    flag,
    float_array,
    index_array,
    linear_parameters,
    padding_index,
    positive_int,
)
from .module import Parameterized
from .ops.nn import embedding_backward_checked, linear_backward_checked, linear_forward_checked

if TYPE_CHECKING:
    import numpy.typing as npt


class Linear(Parameterized):
    """``y = x W^T + b`` over the last axis: ``x [..., in_features] -> y [..., out_features]`` (torch.nn.Linear).

    Parameters: ``weight [out_features, in_features]``, ``bias [out_features]`` (``lin.bias`` is None with
    ``bias=False``), both initialised as torch does (kaiming-uniform with a = √5, i.e. U(-1/√in, 1/√in), and the
    bias likewise). A training-mode call keeps a private copy of its ``x`` for backward (as ``Embedding`` and the
    recurrent layers do), so the caller may reuse its input buffer before that call's backward; eval mode keeps
    nothing.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: npt.DTypeLike = np.float32,
                 seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self._add_parameter("weight", (self.out_features, self.in_features))
        if flag("bias", bias):
            self._add_parameter("bias", (self.out_features,))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        return dict(in_features=self.in_features, out_features=self.out_features, bias="bias" in self._params,
                    dtype=self.dtype.name, seed=self._seed)

    def reset_parameters(self) -> None:
        """torch's init: weight and bias U(-1/√in_features, 1/√in_features)."""
        bound = 1.0 / math.sqrt(self.in_features)
        for p in self._params.values():
            p[...] = self._rng.uniform(-bound, bound, p.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = features_array("x", x, "in_features", self.in_features, self.dtype, MODULE_DTYPE)
        weight, bias = linear_parameters(self)
        # rnncore's GEMM under rc.set_num_threads, not NumPy's BLAS (whose threads would fight the kernels' threads)
        y = linear_forward_checked(x.reshape(-1, self.in_features), weight, bias)
        if self.training:  # a private C-contiguous copy: the caller may overwrite x before backward
            self.save_for_backward(np.array(x, order="C", copy=True))
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def _forward_owned(self, x: np.ndarray) -> np.ndarray:
        """``__call__`` on a checked ``x [N, in_features]`` (C-contiguous, the dtype) that the caller made and
        nobody else holds or mutates (a composite module's intermediate): kept for backward without a copy."""
        weight, bias = linear_parameters(self)
        y = linear_forward_checked(x, weight, bias)
        self.save_for_backward(x)  # (a no-op in eval mode)
        return y

    def _backward_owned(self, dy: np.ndarray) -> np.ndarray:
        """``backward`` of a ``_forward_owned`` call for a checked ``dy [N, out_features]`` (C-contiguous, the
        dtype): accumulates the gradients and returns dx [N, in_features]."""
        weight, _ = linear_parameters(self)
        x = self.saved_for_backward()
        dx = linear_backward_checked(x, weight, dy, self._grads["weight"], self._grads.get("bias"), True)
        assert dx is not None  # need_dx=True
        return dx

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the x of the last recorded call (same shape) — calls go back in reverse order; accumulates
        ``weight``'s and ``bias``'s gradients. ``dy`` has that call's output shape ``[..., out_features]``."""
        weight, _ = linear_parameters(self)  # before the tape: a refused call is not used up
        x = self.saved_for_backward()
        try:
            dy = float_array("dy", dy, [(f"d{k}", n) for k, n in enumerate(x.shape[:-1])]
                             + [("out_features", self.out_features)], self.dtype, MODULE_DTYPE)
        except ValueError as e:
            self._restore_saved(x)  # a rejected dy does not use up the call
            raise ValueError(f"{e} (the output shape of the last recorded call: {type(self).__name__}.backward "
                             "takes calls in reverse order, the last call first)") from None
        except Exception:
            self._restore_saved(x)
            raise
        dx = linear_backward_checked(x.reshape(-1, self.in_features), weight,
                                     dy.reshape(-1, self.out_features), self._grads["weight"],
                                     self._grads.get("bias"), True)
        assert dx is not None  # need_dx=True
        return dx.reshape(x.shape)

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self._params}, dtype={self.dtype.name})")


class Embedding(Parameterized):
    """A lookup table: ``emb(indices)`` with integer ``indices`` of any shape ``[...]`` gives ``weight[indices]``
    of shape ``[..., embedding_dim]`` (torch.nn.Embedding).

    ``weight [num_embeddings, embedding_dim]`` starts N(0, 1), with row ``padding_idx`` (if given; negative counts
    from the end, as in torch) zeroed; that row never receives a gradient. ``backward(dy)`` scatter-adds ``dy`` into
    ``weight``'s gradient with a C++ kernel (rows in a fixed order, so repeated indices give the same bits every
    run) and returns None: indices have no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: npt.DTypeLike = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.num_embeddings = positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.padding_idx: int | None = padding_index(padding_idx, self.num_embeddings)
        self._add_parameter("weight", (self.num_embeddings, self.embedding_dim))
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        return dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                    padding_idx=self.padding_idx, dtype=self.dtype.name, seed=self._seed)

    def reset_parameters(self) -> None:
        """torch's init: N(0, 1), the padding row zeroed."""
        w = self._params["weight"]
        w[...] = self._rng.standard_normal(w.shape)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0.0

    def __call__(self, indices: npt.ArrayLike) -> np.ndarray:
        idx = index_array("indices", indices, self.num_embeddings, letter="num_embeddings")
        out = np.take(embedding_weight(self), idx, axis=0)
        if self.training:
            self.save_for_backward(idx.copy())  # private: the caller may reuse its index buffer
        return out

    def backward(self, dy: np.ndarray) -> None:
        """Accumulates ``weight``'s gradient for the last recorded call (calls go back in reverse order): row
        ``indices[...]`` += ``dy[...]`` (``dy [..., embedding_dim]``, that call's output shape), skipping
        ``padding_idx``. Returns None (indices have no gradient)."""
        embedding_weight(self)  # before the tape: a refused call is not used up
        idx = self.saved_for_backward()
        try:
            dy = float_array("dy", dy, [(f"d{k}", n) for k, n in enumerate(idx.shape)]
                             + [("embedding_dim", self.embedding_dim)], self.dtype, MODULE_DTYPE)
        except ValueError as e:
            self._restore_saved(idx)  # a rejected dy does not use up the call
            raise ValueError(f"{e} (the output shape of the last recorded call: {type(self).__name__}.backward "
                             "takes calls in reverse order, the last call first)") from None
        except Exception:
            self._restore_saved(idx)
            raise
        pad = -1 if self.padding_idx is None else self.padding_idx
        embedding_backward_checked(idx, dy, self._grads["weight"], pad)  # checked here and in __call__
        return None

    def __repr__(self) -> str:
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
                f"dtype={self.dtype.name})")
