"""The course's experiments as demos: each trains on data it makes, shows progress and per-epoch metrics, and is a
model of how to use the library.

- ``rnncore.demos.dates``: date translation with attention (``python -m rnncore``, the main command):
  ``model = dates.train(seed=0)``, ``model.translate([...])``, ``model.attention(text)``.

The pieces they share (seeds, the progress bar, per-epoch metrics, plots) are in ``rnncore.demos._common``. tqdm
(progress bars) and matplotlib (plots) are optional: ``pip install "rnncore[demos]"``; without them a demo prints a
line per epoch and saves no plot.
"""

__all__ = ["dates"]
