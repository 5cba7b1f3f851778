"""Index values the kernels read without the GIL (decoder-session tokens, one-hot indices, lengths, embedding
indices, the cross-entropy's mask over its targets) are checked on the call's own copy: another Python thread
rewriting the caller's array between the check and the kernel must never make an out-of-bounds read. A child process
steps each op many times while a thread flips one entry between a valid value and 10**12; it may raise ValueError,
never crash."""

import subprocess
import sys
from pathlib import Path

CHILD = r'''
import sys, threading, time
import numpy as np
from rnncore import ops
from test_decoder_session import session_args

sys.setswitchinterval(1e-6)  # switch threads as often as possible: the flips land between check and kernel


def race(name, arr, pos, good, call):
    if sys.argv[1:] and name not in sys.argv[1:]:  # (by hand: run only the named cases)
        return
    print(name, flush=True)
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            arr[pos] = 10**12
            arr[pos] = good

    thread = threading.Thread(target=flip)
    thread.start()
    end = time.perf_counter() + 0.3
    try:
        while time.perf_counter() < end:
            try:
                call()
            except ValueError:
                pass
    finally:
        stop.set()
        thread.join()


rng = np.random.default_rng(0)
B, T, H, I, Tx = 4, 6, 8, 5, 7
args, kw, _ = session_args(rng, np.float64, "lstm", {}, dict(score="additive", position="before"), B=B, H=H, Tx=Tx,
                           E=3, A=4, Dv=3, O=H, V=6, Vin=5, biases=True)
lengths = np.full(B, Tx, dtype=np.int64)
args[-1] = lengths
session = ops.DecoderSession(*args, **kw)
tokens = np.zeros(B, dtype=np.int64)
race("session tokens", tokens, 1, 2, lambda: session.step(tokens))
race("session lengths", lengths, 1, Tx, lambda: ops.DecoderSession(*args, **kw))
fkw = {k: v for k, v in kw.items() if k not in ("embedding", "w_out", "b_out")}
x = rng.standard_normal((2, B, 3))
race("decoder lengths", lengths, 1, Tx,
     lambda: ops.attention_decoder_forward(x, None, None, *args, training=False, **fkw))
query, keys, values = rng.standard_normal((B, H)), rng.standard_normal((B, Tx, H)), rng.standard_normal((B, Tx, 3))
race("luong lengths", lengths, 1, Tx,
     lambda: ops.luong_attention_forward(query, keys, values, "dot", lengths=lengths, training=False))
w_ih, w_hh = rng.standard_normal((3 * H, I)), rng.standard_normal((3 * H, H))
index = rng.integers(0, I, size=(T, B))
race("one-hot index", index.reshape(-1), 5, 1, lambda: ops.gru_forward(index, None, w_ih, w_hh, None, None,
                                                                        training=False))
steps = np.full(B, T, dtype=np.int64)
xs = rng.standard_normal((T, B, I))
race("recurrent lengths", steps, 2, T, lambda: ops.gru_forward(xs, None, w_ih, w_hh, None, None, steps,
                                                                training=False))
race("recurrent lengths, training", steps, 2, T, lambda: ops.lstm_forward(
    xs, None, None, rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H)), None, None, steps))
indices = rng.integers(0, 5, size=64)
dy, dweight = rng.standard_normal((64, 16)), np.zeros((5, 16))
race("embedding indices", indices, 7, 3, lambda: ops.embedding_backward(indices, dy, dweight))
ce_logits, ce_targets = rng.standard_normal((256, 8)), rng.integers(0, 8, 256)
ce_targets[-1] = 10**12  # legal while its row is excluded
ce_mask = np.ones(256, bool)
ce_mask[-1] = False
race("cross-entropy mask", ce_mask, 255, False, lambda: ops.softmax_cross_entropy(ce_logits, ce_targets, ce_mask))
print("done", flush=True)
'''


def test_flipping_an_index_during_calls_never_crashes():
    tests = Path(__file__).parent
    run = subprocess.run([sys.executable, "-c", CHILD], cwd=tests, capture_output=True, text=True, timeout=60)
    last = run.stdout.strip().splitlines()[-1:] or ["(nothing)"]
    assert run.returncode == 0 and last == ["done"], (
        f"exit {run.returncode} during {last[0]!r}\n{run.stderr[-2000:]}")
