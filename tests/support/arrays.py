"""Array helpers several test files share: the float dtypes every kernel takes, the central-difference gradient,
and a copy of an array at another alignment."""

import numpy as np

# The dtypes every kernel and layer takes, and their pytest ids.
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]


def numerical_gradient(f, array, eps=1e-6):
    """Central difference of the scalar f() w.r.t. every entry of ``array`` (perturbed in place, then restored)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        gflat[j] = central_difference(f, flat, j, eps)
    return grad


def central_difference(f, flat, j, eps=1e-6):
    """(f(x + eps e_j) - f(x - eps e_j)) / (2 eps) for the scalar f() of the flat view ``flat`` (restored after)."""
    saved = flat[j]
    flat[j] = saved + eps
    plus = f()
    flat[j] = saved - eps
    minus = f()
    flat[j] = saved
    return (plus - minus) / (2 * eps)


def at_offset(a, offset):
    """A C-contiguous copy of ``a`` that starts ``offset`` elements into a fresh buffer: the same values at
    another alignment (to check that results do not depend on where the caller's arrays live)."""
    buffer = np.empty(a.size + offset, dtype=a.dtype)
    view = buffer[offset:].reshape(a.shape)
    view[...] = a
    return view
