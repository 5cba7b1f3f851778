"""Helpers shared by the test files (importable as ``support`` because pyproject.toml puts tests/ on the path).

- ``support.tolerances``: the one tolerance table (TOLERANCES, tol, assert_close) and assert_identical.
- ``support.cells``:      the recurrent cell variants under test, their random inputs, and run_forward/run_backward.
- ``support.arrays``:     the float dtypes under test, the central-difference gradient, arrays at another alignment.
- ``support.fixtures``:   where the golden .npz files live and how they are read.
- ``support.decoder_calls``: the fused attention decoder's random arguments (make_args) and call_forward.

conftest.py keeps only pytest's configuration, the hypothesis profiles and the fixtures.
"""
