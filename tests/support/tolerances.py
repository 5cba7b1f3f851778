"""The one tolerance table: what "equal" means in every comparison between rnncore and a reference.

Every comparison between rnncore and a reference (NumPy, PyTorch fixtures, finite differences) takes its
tolerances from ``TOLERANCES`` here, keyed by what is being compared, so a tolerance is changed in one place.
"""

import numpy as np

# What "equal" means, per dtype and per kind of comparison.
#   kernel_vs_reference: C++ kernel against rnncore.reference (float64 accumulation) on the same inputs.
#   long_sums:           the same at sizes where an output sums thousands of float32 terms (weight gradients over
#                        T*B = 3200 rows): rounding grows with sqrt(terms), and a sum that cancels to near zero keeps
#                        the absolute error of its terms (measured: 2.5e-5 on such an element, with Eigen's GEMM too).
#   fixture:             rnncore against golden outputs that PyTorch produced (stored .npz files).
#   gradcheck:           analytic gradient against a float64 central difference (eps = 1e-6).
TOLERANCES = {
    "kernel_vs_reference": {
        np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
        np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    },
    "long_sums": {
        np.dtype(np.float32): dict(rtol=2e-4, atol=1e-4),
        np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    },
    "fixture": {
        np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
        np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11),
    },
    "gradcheck": {
        np.dtype(np.float64): dict(rtol=1e-5, atol=1e-7),
    },
}


def tol(kind, dtype):
    """The rtol/atol pair for comparing arrays of ``dtype`` in a ``kind`` comparison (a key of TOLERANCES)."""
    return TOLERANCES[kind][np.dtype(dtype)]


def assert_close(actual, expected, kind, dtype, name=""):
    """np.testing.assert_allclose with the table's tolerance; ``name`` says which output differed."""
    np.testing.assert_allclose(actual, expected, err_msg=name, **tol(kind, dtype))


def assert_identical(got, want, name, where=""):
    """Exactly equal (NaN = NaN). ``name`` is the output's name (db_ih, dx, ...); ``where`` is added to the
    failure message."""
    np.testing.assert_array_equal(got, want, err_msg=f"{where} {name}".strip())
