"""Thread helpers several test files share."""

import contextlib

import rnncore as rc
from rnncore import _core


@contextlib.contextmanager
def team(threads):
    """rnncore on `threads` threads with every call on the team, whatever its size (the parallel and
    adapt_threads knobs), so that 2 threads really split the work."""
    _core._tuning_set("parallel", 1)
    _core._tuning_set("adapt_threads", 0)
    try:
        with rc.threads(threads):
            yield
    finally:
        _core._tuning_set("parallel", -1)
        _core._tuning_set("adapt_threads", -1)
