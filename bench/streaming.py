"""Streaming inference cost: one LSTM step per Python call (``cell.stream().step``, and ``cell(x, state)`` in a
decoder loop), and blocks of steps through the layer with the state carried, against torch.nn.LSTMCell /
torch.nn.LSTM on the same weights.

    python bench/streaming.py [--hidden 64] [--block 512] [--threads 1]

Issue targets: a single step call (H=64, B=1) <= 2 us; a 512-step block <= 1 us per step. Checks the results
against torch (when installed) before timing.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rnncore as rc  # noqa: E402

from common import disagreement, time_interleaved  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=2.0)
    args = parser.parse_args()
    H, T = args.hidden, args.block
    rc.set_num_threads(args.threads)
    cell = rc.LSTMCell(H, H, seed=0).eval()
    layer = rc.LSTM(H, H, seed=0).eval()
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, 1, H)).astype(np.float32)
    state = (np.zeros((1, H), np.float32), np.zeros((1, H), np.float32))

    stream = cell.stream(batch=1)
    fns = {"rnncore stream.step": lambda: stream.step(x[0]),
           "rnncore cell step": lambda: cell(x[0], state),
           f"rnncore layer, {T}-step block": lambda: layer(x)}
    try:
        import torch
        torch.set_num_threads(args.threads)
        tcell = torch.nn.LSTMCell(H, H)
        tcell.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
        tlayer = torch.nn.LSTM(H, H)
        tlayer.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in cell.state_dict().items()})
        tx = torch.from_numpy(x)
        tstate = (torch.zeros(1, H), torch.zeros(1, H))
        with torch.inference_mode():
            err_cell = max(disagreement(cell(x[0], state)[0], tcell(tx[0], tstate)[0].numpy()),
                           disagreement(cell.stream(batch=1).step(x[0]), tcell(tx[0], tstate)[0].numpy()))
            err_layer = disagreement(layer(x)[0], tlayer(tx)[0].numpy())
        print(f"check vs torch {torch.__version__}: cell {err_cell:.1e}, layer {err_layer:.1e}")
        if max(err_cell, err_layer) > 1e-4:
            print("FAIL: rnncore disagrees with torch")
            return 1

        def torch_step():
            with torch.inference_mode():
                tcell(tx[0], tstate)

        def torch_block():
            with torch.inference_mode():
                tlayer(tx)

        fns["torch LSTMCell step"] = torch_step
        fns[f"torch LSTM, {T}-step block"] = torch_block
    except ImportError:
        print("torch not installed: rnncore only")
    timings = time_interleaved(fns, args.budget)
    print(f"LSTM H={H}, B=1, {args.threads} thread(s), minimum time:")
    for name, timing in timings.items():
        per_step = timing.min / (T if "block" in name else 1)
        print(f"  {name:<32} {timing.min * 1e6:10.2f} us per call  {per_step * 1e6:8.3f} us per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
