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
- ``rnncore.demos.forecast``: a GRU/LSTM forecasting the yearly sunspot numbers (shipped CSV) against persistence
  and a linear autoregression (``python -m rnncore forecast``); ``forecast.train(seed=0).rmse``.
- ``rnncore.demos.digits``: scikit-learn's 8x8 digits read row by row by a bidirectional LSTM with lengths
  (``python -m rnncore digits``; needs scikit-learn); ``digits.train(seed=0).accuracy``.
- ``rnncore.demos.charlm``: a character-level LSTM language model of the standard library's docstrings against a
  bigram model, sampled with temperature and top-k (``python -m rnncore charlm [--text FILE]``);
  ``charlm.generate(charlm.train(seed=0), "Return the ")``.

The pieces they share (seeds, the progress bar, per-epoch metrics, plots) are in ``rnncore.demos._common``. tqdm
(progress bars) and matplotlib (plots) are optional: ``pip install "rnncore[demos]"``; without them a demo prints a
line per epoch and saves no plot. The digits demo needs scikit-learn (in the same extra) for its data.
"""

__all__ = ["dates", "addition", "sine", "gradients", "forecast", "digits", "charlm"]
