"""How each library runs one config: rnncore, the NumPy reference, PyTorch and JAX, all from the same float32 inputs
in PyTorch's layouts (common.make_inputs), and the check that rnncore agrees with each peer.

Each runner's ``prepare(cfg, inputs, mode)`` returns a ``Prepared``: ``run()`` performs one timed call (inference: the
forward; training: forward + backward of ``sum(y * dy)``, i.e. backward from the upstream gradient dy) and
``outputs()`` runs once more and returns numpy arrays keyed like common.OUTPUT_KEYS. Peers are optional: a runner whose
library does not import has ``available = False`` and a ``reason``.

Thread settings are per process (bench/run.py starts one worker process per thread count): ``configure(threads)``
sets each library's own knob; JAX's must be fixed before jax is imported (see ``jax_environment``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from common import AGREEMENT, OUTPUT_KEYS, REFERENCE_MAX_FLOPS, Config, disagreement, forward_flops


@dataclass
class Prepared:
    run: Callable[[], object]
    outputs: Callable[[], dict]


class Runner:
    name = "?"
    available = True
    reason = ""
    version = ""

    def supports(self, cfg: Config, mode: str) -> bool:
        return True

    def configure(self, threads: int) -> None:
        pass


# ---- rnncore and its NumPy reference -----------------------------------------------------------------------------


def _call_ops(forward: Callable, backward: Callable, cfg: Config, inp: dict, mode: str):
    """One call of the cell's row's ops (rnncore.ops) or their twins in rnncore.reference (same API), initial states
    zero: returns (run, outputs)."""
    kw = cfg.cell.kwargs
    states = (None,) * cfg.cell.variant.kind.n_states
    args = (inp["x"], *states, inp["w_ih"], inp["w_hh"], inp["b_ih"], inp["b_hh"])
    if mode == "inference":
        def run():
            return forward(*args, training=False, **kw)[0]

        def outputs():
            return {"y": run()}
    else:
        def run():
            y, *_, ws = forward(*args, training=True, **kw)
            return y, backward(ws, inp["dy"])

        def outputs():
            y, grads = run()
            dx, *_, dw_ih, dw_hh, db_ih, db_hh = grads
            return dict(y=y, dx=dx, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)
    return Prepared(run, outputs)


class Rnncore(Runner):
    name = "rnncore"

    def __init__(self):
        import rnncore
        self.rc = rnncore
        self.version = rnncore.__version__

    def configure(self, threads: int) -> None:
        self.rc.set_num_threads(threads)

    def prepare(self, cfg, inp, mode):
        kind = cfg.cell.variant.kind
        return _call_ops(kind.forward, kind.backward, cfg, inp, mode)


class Reference(Runner):
    """rnncore.reference: the readable NumPy spec (float64 inside). Timed at small sizes only."""
    name = "reference"

    def __init__(self):
        import rnncore
        self.ref = rnncore.reference
        self.version = f"numpy {np.__version__}"

    def supports(self, cfg, mode):
        return forward_flops(cfg.cell, cfg.shape) <= REFERENCE_MAX_FLOPS

    def prepare(self, cfg, inp, mode):
        kind = cfg.cell.variant.kind
        return _call_ops(kind.reference_forward, kind.reference_backward, cfg, inp, mode)


# ---- PyTorch ------------------------------------------------------------------------------------------------------

#: rnncore options torch.nn has no keyword for (torch.nn.GRU always applies the reset gate after the hidden product).
#: The other options (nonlinearity) are torch's keywords too, with the same values.
_NOT_TORCH_OPTIONS = frozenset({"reset_after"})


def _torch_options(variant) -> dict:
    """The keywords of the variant's torch.nn class (``variant.kind.torch``). A variant torch lacks
    (``variant.in_torch`` False: GRU reset_after=False) gets torch's nearest module, the class's own equations:
    Torch.supports keeps it out of the timed comparison; bench/memory.py measures that module's memory."""
    return {name: value for name, value in variant.options.items() if name not in _NOT_TORCH_OPTIONS}


class Torch(Runner):
    """torch.nn.LSTM / GRU / RNN(tanh), one layer, time-major, the same weights loaded through load_state_dict.
    torch has no reset_after=False GRU, so gru_rb is compared against JAX and the reference only."""
    name = "torch"

    def __init__(self):
        try:
            import torch
        except ImportError as e:
            self.available, self.reason = False, f"torch not importable ({e})"
            return
        self.torch = torch
        self.version = torch.__version__

    def supports(self, cfg, mode):
        return cfg.cell.variant.in_torch

    def configure(self, threads):
        self.torch.set_num_threads(threads)

    def _module(self, cfg, inp):
        torch, s, v = self.torch, cfg.shape, cfg.cell.variant
        m = getattr(torch.nn, v.kind.torch)(s.I, s.H, **_torch_options(v))
        # rnncore's weights are PyTorch's layout: they load as a state_dict unchanged.
        names = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
        m.load_state_dict({torch_name: torch.from_numpy(inp[k]) for k, torch_name in names.items()})
        return m

    def prepare(self, cfg, inp, mode):
        torch = self.torch
        m = self._module(cfg, inp)
        if mode == "inference":
            x = torch.from_numpy(inp["x"])

            def run():
                with torch.inference_mode():
                    return m(x)[0]

            return Prepared(run, lambda: {"y": run().numpy()})
        x = torch.from_numpy(inp["x"].copy()).requires_grad_(True)
        dy = torch.from_numpy(inp["dy"])
        params = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]

        def run():
            x.grad = None
            for p in params:
                p.grad = None
            y = m(x)[0]
            y.backward(dy)
            return y

        def outputs():
            y = run()
            return dict(y=y.detach().numpy(), dx=x.grad.numpy(), dw_ih=params[0].grad.numpy(),
                        dw_hh=params[1].grad.numpy(), db_ih=params[2].grad.numpy(), db_hh=params[3].grad.numpy())

        return Prepared(run, outputs)


# ---- JAX ----------------------------------------------------------------------------------------------------------


def jax_environment(threads: int) -> dict:
    """Environment for a process that will import jax with ``threads`` threads. XLA reads its flags once, at import.
    --xla_cpu_multi_thread_eigen=false is the documented single-thread switch, but the XLA CPU runtime of jax 0.10
    ignores it (measured: a 2048² matmul still runs on both cores), so bench/run.py also pins a 1-thread worker to one
    core with sched_setaffinity; the flags are kept for older jaxlibs."""
    env = {}
    if threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def _jax_lstm_step(jax, w_hh, b_hh, H, options):
    sigmoid, jnp = jax.nn.sigmoid, jax.numpy

    def step(carry, xw_t):
        h, c = carry
        g = xw_t + h @ w_hh.T + b_hh
        i, f, gg, o = jnp.split(g, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(gg)
        h = sigmoid(o) * jnp.tanh(c)
        return (h, c), h
    return step


def _jax_gru_step(jax, w_hh, b_hh, H, options):
    sigmoid, jnp = jax.nn.sigmoid, jax.numpy
    if options["reset_after"]:
        def step(h, xw_t):
            hw = h @ w_hh.T + b_hh
            xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
            hr, hz, hn = jnp.split(hw, 3, axis=-1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            return h, h
        return step

    def step_reset_before(h, xw_t):  # n = tanh(x W_in^T + b_in + (r*h) W_hn^T + b_hn)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H:]
        xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
        hr, hz = jnp.split(h @ w_rz.T + b_hh[: 2 * H], 2, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = jnp.tanh(xn + (r * h) @ w_n.T + b_hh[2 * H:])
        h = (1 - z) * n + z * h
        return h, h
    return step_reset_before


def _jax_rnn_step(jax, w_hh, b_hh, H, options):
    jnp = jax.numpy
    act = jnp.tanh if options["nonlinearity"] == "tanh" else (lambda v: jnp.maximum(v, 0))

    def step(h, xw_t):
        h = act(xw_t + h @ w_hh.T + b_hh)
        return h, h
    return step


def _jax_forward(cell, jax):
    """The cell as a scan: the input projection of all steps as one matmul outside the scan (as the kernels do),
    then per step h·W_hh^T and the gate math. Same equations as docs/design.md §2."""
    from rnncore._cell_table import GRU, LSTM, RNN
    kind, options = cell.variant.kind, cell.kwargs
    make_step = {LSTM: _jax_lstm_step, GRU: _jax_gru_step, RNN: _jax_rnn_step}[kind]  # by the table's rows
    jnp, lax = jax.numpy, jax.lax

    def forward(params, x):
        w_ih, w_hh, b_ih, b_hh = params
        T, B, I = x.shape
        H = w_hh.shape[1]
        xw = (x.reshape(T * B, I) @ w_ih.T + b_ih).reshape(T, B, -1)
        h0 = jnp.zeros((B, H), x.dtype)
        carry0 = h0 if kind.n_states == 1 else (h0,) * kind.n_states  # every initial state zero
        return lax.scan(make_step(jax, w_hh, b_hh, H, options), carry0, xw)[1]

    return forward


class Jax(Runner):
    """A jitted lax.scan of the same equations (every cell, both GRU variants), gradients by jax.vjp of the same
    function. Compilation happens in the warm-up call (not timed; its time is reported as compile_s)."""
    name = "jax"

    def __init__(self):
        try:
            import jax
        except ImportError as e:
            self.available, self.reason = False, f"jax not importable ({e})"
            return
        self.jax = jax
        self.version = jax.__version__

    def prepare(self, cfg, inp, mode):
        jax = self.jax
        forward = _jax_forward(cfg.cell, jax)
        params = tuple(jax.device_put(inp[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
        x = jax.device_put(inp["x"])
        if mode == "inference":
            f = jax.jit(forward)

            def run():
                return f(params, x).block_until_ready()

            return Prepared(run, lambda: {"y": np.asarray(run())})
        dy = jax.device_put(inp["dy"])

        def step(params, x, dy):
            y, vjp = jax.vjp(forward, params, x)
            dparams, dx = vjp(dy)
            return y, dx, dparams

        f = jax.jit(step)

        def run():
            return jax.block_until_ready(f(params, x, dy))

        def outputs():
            y, dx, (dw_ih, dw_hh, db_ih, db_hh) = run()
            return {k: np.asarray(v) for k, v in dict(y=y, dx=dx, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih,
                                                        db_hh=db_hh).items()}

        return Prepared(run, outputs)


# ---- all of them, and the check --------------------------------------------------------------------------------------

PEER_NAMES = ("torch", "jax", "reference")


def runners(names=("rnncore", *PEER_NAMES)) -> dict[str, Runner]:
    """Runner objects by name, in table order; unavailable peers are included with available=False."""
    table = {"rnncore": Rnncore, "torch": Torch, "jax": Jax, "reference": Reference}
    return {n: table[n]() for n in names}


def check(mode: str, mine: dict, theirs: dict) -> dict:
    """rnncore's outputs against a peer's: the disagreement (common.disagreement) per output and the worst one."""
    per = {k: disagreement(mine[k], theirs[k]) for k in OUTPUT_KEYS[mode]}
    worst = max(per, key=per.get)
    return {"ok": per[worst] <= AGREEMENT, "worst": worst, "max": per[worst], "per_output": per}
