"""The course's experiments as demos: each trains on data it makes, shows progress and per-epoch metrics, and is a
model of how to use the library.

- ``rnncore.demos.dates``: date translation with attention (``python -m rnncore``, the main command):
  ``model = dates.train(seed=0)``, ``model.translate([...])``, ``model.attention(text)``.
- ``rnncore.demos.addition``: seq2seq with attention adds 3-digit numbers (``python -m rnncore addition``):
  ``model = addition.train(seed=0)``, ``model.answer(["535+61"])``.
- ``rnncore.demos.sine``: a simple RNN approximates a function, the next value of noisy sines
  (``python -m rnncore sine``): ``model = sine.train(seed=0)``, ``model.predict(windows)``.
- ``rnncore.demos.gradients``: the vanishing gradient, ||dL/dh_t|| over t for a simple RNN, an LSTM and a GRU on a
  long-lag task (``python -m rnncore gradients``): ``result = gradients.train(seed=0)``.

The pieces they share (seeds, the progress bar, per-epoch metrics, plots) are in ``rnncore.demos._common``. tqdm
(progress bars) and matplotlib (plots) are optional: ``pip install "rnncore[demos]"``; without them a demo prints a
line per epoch and saves no plot.
"""

__all__ = ["dates", "addition", "sine", "gradients"]
