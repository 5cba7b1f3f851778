"""The seq2seq-with-attention model of bench/seq2seq.py written in PyTorch (eager, a Python loop over decoder steps,
attention by hand, as PyTorch's seq2seq tutorial writes it) and in JAX (jit + lax.scan), on the same weights.

The model (the course's date-translation model, docs/design.md §2 "Attention decoder", position "before")::

    encoder:   a = biLSTM(one_hot(source))                      [B, Tx, 2·He]  (forward and reverse outputs joined)
    keys:      K' = a W_k^T                                      [B, Tx, A]     (once per source)
    step t:    u = tanh(K' + h_{t-1} W_q^T + b_a)                (the course's Dense(A, tanh) on [s_prev; a], split)
               e = relu(u · w_v + score_bias)                    (Dense(1, relu))
               α = softmax_Tx(e)       ctx = Σ_t' α a            (t' < each length when torch's forward gets lengths)
               h_t, c_t = LSTMCell([y_emb_{t-1}; ctx], (h_{t-1}, c_{t-1}))   (y_emb only when E > 0)
    output:    logits_t = h_t W_o^T + b_o                        s_{-1} = c_{-1} = 0 (the course's s0, c0)
    loss:      mean cross-entropy over the targets that are not pad

Weights are a flat dict of float32 arrays under the names below (``init_weights``), the common currency every
library loads: PyTorch's own parameter names for the torch modules, the same keys for JAX's pytree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Model:
    """Sizes of one benchmarked model: source / target vocabularies, encoder hidden size per direction He, decoder
    hidden H, attention units A, target embedding E (0: the decoder's input is the context only, the course's model).
    The one-hot source has no parameters (the course feeds one-hot characters)."""
    source_vocab: int
    target_vocab: int
    encoder_hidden: int
    decoder_hidden: int
    attention_units: int
    target_embedding: int = 0

    @property
    def values(self) -> int:
        """Dv = 2·He: the encoder's outputs, both directions."""
        return 2 * self.encoder_hidden


#: Token ids shared by every library (rc.Seq2Seq's defaults).
PAD, BOS, EOS = 0, 1, 2


def weight_shapes(m: Model) -> dict[str, tuple[int, ...]]:
    He, H, A, Dv, E = m.encoder_hidden, m.decoder_hidden, m.attention_units, m.values, m.target_embedding
    shapes = {}
    for suffix in ("", "_reverse"):
        shapes |= {f"encoder.weight_ih_l0{suffix}": (4 * He, m.source_vocab),
                   f"encoder.weight_hh_l0{suffix}": (4 * He, He),
                   f"encoder.bias_ih_l0{suffix}": (4 * He,), f"encoder.bias_hh_l0{suffix}": (4 * He,)}
    shapes |= {"key.weight": (A, Dv), "query.weight": (A, H), "query.bias": (A,),
               "score.weight": (1, A), "score.bias": (1,),
               "cell.weight_ih": (4 * H, E + Dv), "cell.weight_hh": (4 * H, H),
               "cell.bias_ih": (4 * H,), "cell.bias_hh": (4 * H,),
               "out.weight": (m.target_vocab, H), "out.bias": (m.target_vocab,)}
    if E:
        shapes["target_embedding.weight"] = (m.target_vocab, E)
    return shapes


def init_weights(m: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 weights as PyTorch initialises these modules: U(-1/√fan, 1/√fan) with fan = the hidden size for the
    recurrent layers and the input size for the linear ones; N(0, 1) for the embedding."""
    rng = np.random.default_rng(seed)
    fan = {"encoder": m.encoder_hidden, "cell": m.decoder_hidden, "key": m.values, "query": m.decoder_hidden,
           "score": m.attention_units, "out": m.decoder_hidden}
    out = {}
    for name, shape in weight_shapes(m).items():
        module = name.split(".")[0]
        if module == "target_embedding":
            out[name] = rng.standard_normal(shape, dtype=np.float32)
        else:
            k = 1.0 / math.sqrt(fan[module])
            out[name] = rng.uniform(-k, k, shape).astype(np.float32)
    return out


def masked_mean_ce_numpy(logits: np.ndarray, targets: np.ndarray) -> float:
    """The loss in float64 NumPy (for a sanity check of the peers' own)."""
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    keep = targets != PAD
    return float(-(picked * keep).sum() / keep.sum())


# ---- PyTorch -------------------------------------------------------------------------------------------------------


def torch_model(m: Model, weights: dict[str, np.ndarray]):
    """The model as torch.nn modules with ``weights`` loaded, in their dtype (see the module docstring for the
    equations)."""
    import torch
    from torch import nn
    F = torch.nn.functional

    class Seq2SeqAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(m.source_vocab, m.encoder_hidden, batch_first=True, bidirectional=True)
            self.key = nn.Linear(m.values, m.attention_units, bias=False)
            self.query = nn.Linear(m.decoder_hidden, m.attention_units)
            self.score = nn.Linear(m.attention_units, 1)
            self.cell = nn.LSTMCell(m.target_embedding + m.values, m.decoder_hidden)
            if m.target_embedding:
                self.target_embedding = nn.Embedding(m.target_vocab, m.target_embedding)
            self.out = nn.Linear(m.decoder_hidden, m.target_vocab)

        def encode(self, source, lengths=None):
            """source [B, Tx] int64 -> (a [B, Tx, Dv], K' [B, Tx, A]): the keys projected once (the tutorial
            projects them again at every step; once is the faster and the usual way). ``lengths [B]`` (int64, or
            None: all Tx): the sources are packed (pack_padded_sequence: the reverse direction starts at each
            source's last step) and a = 0 past each length, as rc.Seq2Seq reads padded sources."""
            x = F.one_hot(source, m.source_vocab).to(self.key.weight.dtype)
            if lengths is None:
                a, _ = self.encoder(x)
            else:
                rnn = nn.utils.rnn
                packed = rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                a, _ = rnn.pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=x.shape[1])
            return a, self.key(a)

        def attend(self, h, a, projected_keys, keep=None):
            """The tutorial's BahdanauAttention.forward with the course's relu energy: (context [B, Dv], α [B, Tx]);
            ``keep [B, Tx]`` (bool, or None: all): the source steps attended to (the others get α = 0)."""
            u = torch.tanh(projected_keys + self.query(h).unsqueeze(1))
            energy = F.relu(self.score(u).squeeze(2))
            if keep is not None:
                energy = energy.masked_fill(~keep, -math.inf)
            alpha = F.softmax(energy, dim=1)
            return torch.bmm(alpha.unsqueeze(1), a).squeeze(1), alpha

        def step(self, token, h, c, a, projected_keys, keep=None):
            """One decoder step (the tutorial's forward_step): returns h_t, c_t, α_t."""
            context, alpha = self.attend(h, a, projected_keys, keep)
            x = context if token is None else torch.cat([self.target_embedding(token), context], dim=1)
            h, c = self.cell(x, (h, c))
            return h, c, alpha

        def forward(self, source, target_inputs, steps, lengths=None):
            """Teacher-forced: logits [B, Ty, V] and α [B, Ty, Tx]; target_inputs [B, Ty] or None (context only);
            ``lengths [B]`` the source lengths (None: all Tx)."""
            a, projected_keys = self.encode(source, lengths)
            keep = None if lengths is None else torch.arange(source.shape[1]) < lengths.unsqueeze(1)
            h = a.new_zeros(source.shape[0], m.decoder_hidden)
            c = h
            hs, alphas = [], []
            for t in range(steps):  # the tutorial's Python loop over decoder steps
                token = None if target_inputs is None else target_inputs[:, t]
                h, c, alpha = self.step(token, h, c, a, projected_keys, keep)
                hs.append(h)
                alphas.append(alpha)
            return self.out(torch.stack(hs, dim=1)), torch.stack(alphas, dim=1)

    tensors = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    model = Seq2SeqAttention().to(next(iter(tensors.values())).dtype)  # the weights' dtype (float32 or float64)
    model.load_state_dict(tensors)
    return model


class TorchTraining:
    """One training step in PyTorch: forward, masked mean cross-entropy (ignore_index=pad), backward, Adam."""

    def __init__(self, m: Model, weights: dict[str, np.ndarray], batch: dict, lr: float):
        import torch
        self.torch = torch
        self.model = torch_model(m, weights)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.source = torch.from_numpy(batch["source"])
        self.target_inputs = None if not m.target_embedding else torch.from_numpy(batch["target_inputs"])
        self.targets = torch.from_numpy(batch["targets"])
        self.steps = batch["targets"].shape[1]
        self.vocab = m.target_vocab

    def loss(self):
        F = self.torch.nn.functional
        logits, alpha = self.model(self.source, self.target_inputs, self.steps)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), self.targets.reshape(-1), ignore_index=PAD)
        return loss, logits, alpha

    def run(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss, _, _ = self.loss()
        loss.backward()
        self.optimizer.step()

    def outputs(self) -> dict:
        """Forward and gradients at the current weights (no optimizer step): logits, alpha, loss, grads by name."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, logits, alpha = self.loss()
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in self.model.named_parameters()}
        self.optimizer.zero_grad(set_to_none=True)
        return dict(logits=logits.detach().numpy(), alpha=alpha.detach().numpy(), loss=float(loss.detach()),
                    grads=grads)


# ---- JAX -------------------------------------------------------------------------------------------------------------


def _jax_functions(m: Model):
    """The model, loss and Adam step as pure JAX functions of a params dict (``init_weights``' names)."""
    import jax
    import jax.numpy as jnp
    lax = jax.lax

    def lstm_scan(p, prefix, x):
        """x [T, B, I] -> y [T, B, He]: the input projection of all steps as one matmul, then a lax.scan."""
        T, B, _ = x.shape
        bias = p[f"encoder.bias_ih_l0{prefix}"] + p[f"encoder.bias_hh_l0{prefix}"]
        xw = x @ p[f"encoder.weight_ih_l0{prefix}"].T + bias
        w_hh = p[f"encoder.weight_hh_l0{prefix}"]

        def step(carry, xw_t):
            h, c = carry
            i, f, g, o = jnp.split(xw_t + h @ w_hh.T, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        zeros = jnp.zeros((B, m.encoder_hidden), x.dtype)
        return lax.scan(step, (zeros, zeros), xw)[1]

    def forward(p, source, target_inputs, steps):
        x = jax.nn.one_hot(source.T, m.source_vocab, dtype=jnp.float32)        # [Tx, B, Vin]
        a = jnp.concatenate([lstm_scan(p, "", x), lstm_scan(p, "_reverse", x[::-1])[::-1]], axis=-1)
        a = jnp.transpose(a, (1, 0, 2))                                        # [B, Tx, Dv]
        projected_keys = a @ p["key.weight"].T
        w_ih, w_hh = p["cell.weight_ih"], p["cell.weight_hh"]
        bias = p["cell.bias_ih"] + p["cell.bias_hh"]
        w_v, score_bias = p["score.weight"][0], p["score.bias"][0]

        def step(carry, token_embedding):
            h, c = carry
            u = jnp.tanh(projected_keys + (h @ p["query.weight"].T + p["query.bias"])[:, None, :])
            alpha = jax.nn.softmax(jax.nn.relu(u @ w_v + score_bias), axis=1)
            context = jnp.einsum("bt,btd->bd", alpha, a)
            x_t = context if token_embedding is None else jnp.concatenate([token_embedding, context], axis=1)
            i, f, g, o = jnp.split(x_t @ w_ih.T + h @ w_hh.T + bias, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), (h, alpha)

        B = source.shape[0]
        zeros = jnp.zeros((B, m.decoder_hidden), jnp.float32)
        xs = None if target_inputs is None else p["target_embedding.weight"][target_inputs.T]
        _, (hs, alphas) = lax.scan(step, (zeros, zeros), xs, length=steps)
        logits = hs @ p["out.weight"].T + p["out.bias"]                       # [Ty, B, V]
        return jnp.transpose(logits, (1, 0, 2)), jnp.transpose(alphas, (1, 0, 2))

    def loss_fn(p, source, target_inputs, targets):
        logits, alpha = forward(p, source, target_inputs, targets.shape[1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        keep = (targets != PAD).astype(jnp.float32)
        return -(picked * keep).sum() / keep.sum(), (logits, alpha)

    def adam(p, state, grads, lr, betas=(0.9, 0.999), eps=1e-8):
        """torch.optim.Adam's update (no weight decay)."""
        step, m1, m2 = state
        step = step + 1
        m1 = jax.tree_util.tree_map(lambda a, g: betas[0] * a + (1 - betas[0]) * g, m1, grads)
        m2 = jax.tree_util.tree_map(lambda a, g: betas[1] * a + (1 - betas[1]) * g * g, m2, grads)
        c1, c2 = 1 - betas[0] ** step, jnp.sqrt(1 - betas[1] ** step)
        p = jax.tree_util.tree_map(lambda w, a, b: w - (lr / c1) * a / (jnp.sqrt(b) / c2 + eps), p, m1, m2)
        return p, (step, m1, m2)

    return forward, loss_fn, adam


class JaxTraining:
    """One jitted training step in JAX: forward (lax.scan over decoder steps), loss, jax.grad, Adam. Compiles in the
    first (untimed) call."""

    def __init__(self, m: Model, weights: dict[str, np.ndarray], batch: dict, lr: float):
        import jax
        import jax.numpy as jnp
        self.jax = jax
        _, loss_fn, adam = _jax_functions(m)
        self.params = {k: jnp.asarray(v) for k, v in weights.items()}
        zeros = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.state = (jnp.zeros((), jnp.float32), zeros, jax.tree_util.tree_map(jnp.zeros_like, self.params))
        self.source = jnp.asarray(batch["source"])
        self.target_inputs = None if not m.target_embedding else jnp.asarray(batch["target_inputs"])
        self.targets = jnp.asarray(batch["targets"])
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def train_step(params, state, source, target_inputs, targets):
            (loss, _), grads = grad_fn(params, source, target_inputs, targets)
            params, state = adam(params, state, grads, lr)
            return params, state, loss

        self.train_step = jax.jit(train_step)
        self.value_and_grad = jax.jit(grad_fn)

    def run(self) -> None:
        self.params, self.state, loss = self.train_step(self.params, self.state, self.source, self.target_inputs,
                                                        self.targets)
        loss.block_until_ready()

    def outputs(self) -> dict:
        (loss, (logits, alpha)), grads = self.value_and_grad(self.params, self.source, self.target_inputs,
                                                             self.targets)
        return dict(logits=np.asarray(logits), alpha=np.asarray(alpha), loss=float(loss),
                    grads={k: np.asarray(v) for k, v in grads.items()})


# ---- decoding in PyTorch ------------------------------------------------------------------------------------------


class TorchDecoding:
    """Batched greedy and beam search in PyTorch over the same model (target embedding fed back), inference mode.
    The beam search is rnncore.decode.beam_search's algorithm (fairseq's) on tensors: B·beam rows, one model step
    per time step for all of them, the best 2·beam candidates per source by torch.topk, an eos ranked within the
    first beam ends a hypothesis, a source stops with beam ended hypotheses, score = log-prob / len**length_penalty,
    states reordered by index_select."""

    def __init__(self, m: Model, weights: dict[str, np.ndarray]):
        import torch
        self.torch = torch
        self.m = m
        self.model = torch_model(m, weights).eval()

    def _start(self, source):
        a, projected_keys = self.model.encode(source)
        h = a.new_zeros(source.shape[0], self.m.decoder_hidden)
        return a, projected_keys, h, h.clone()

    def _log_probs(self, token, h, c, a, projected_keys):
        h, c, _ = self.model.step(token, h, c, a, projected_keys)
        return self.torch.log_softmax(self.model.out(h), dim=1), h, c

    def greedy(self, source: np.ndarray, max_len: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Tokens per source (without eos) and the summed log-probs, as rnncore.decode.greedy."""
        torch = self.torch
        with torch.inference_mode():
            src = torch.from_numpy(source)
            n = src.shape[0]
            a, keys, h, c = self._start(src)
            token = torch.full((n,), BOS, dtype=torch.int64)
            done = torch.zeros(n, dtype=torch.bool)
            scores = torch.zeros(n, dtype=torch.float64)
            out = []
            for _ in range(max_len):
                log_probs, h, c = self._log_probs(token, h, c, a, keys)
                best, token = log_probs.max(dim=1)
                token = token.masked_fill(done, EOS)
                scores += torch.where(done, 0.0, best.double())
                out.append(token)
                done |= token == EOS
                if bool(done.all()):
                    break
            tokens = torch.stack(out, dim=1).numpy()
        return [row[: np.flatnonzero(row == EOS)[0]] if (row == EOS).any() else row for row in tokens], scores.numpy()

    def beam_search(self, source: np.ndarray, max_len: int, beam: int, length_penalty: float = 1.0
                    ) -> tuple[list[np.ndarray], np.ndarray]:
        """The best hypothesis per source (tokens without eos) and its length-normalised score."""
        torch = self.torch
        with torch.inference_mode():
            src = torch.from_numpy(source)
            n, k, V = src.shape[0], beam, self.m.target_vocab
            a, keys, h, c = self._start(src)
            rows = torch.arange(n).repeat_interleave(k)
            a, keys, h, c = a[rows], keys[rows], h[rows], c[rows]
            token = torch.full((n * k,), BOS, dtype=torch.int64)
            cum = torch.full((n, k), -math.inf, dtype=torch.float64)
            cum[:, 0] = 0.0  # all beams start as the same empty prefix: only beam 0 expands at the first step
            history = torch.zeros((n, k, 0), dtype=torch.int64)
            ended: list[list[tuple[float, np.ndarray]]] = [[] for _ in range(n)]
            done = torch.zeros(n, dtype=torch.bool)
            base = (torch.arange(n) * k).unsqueeze(1)
            for t in range(max_len):
                log_probs, h, c = self._log_probs(token, h, c, a, keys)
                cand = (cum.unsqueeze(2) + log_probs.double().view(n, k, V)).view(n, k * V)
                top, order = torch.topk(cand, 2 * k, dim=1)
                beam_of, tok_of = order // V, order % V
                usable = torch.isfinite(top) & ~done.unsqueeze(1)
                is_eos = tok_of == EOS
                ending = usable & is_eos & (torch.arange(2 * k) < k)
                going = usable & ~is_eos
                slot = going.cumsum(dim=1) - 1
                going &= slot < k
                new_cum = torch.full((n, k), -math.inf, dtype=torch.float64)
                new_beam = torch.zeros((n, k), dtype=torch.int64)
                new_tok = torch.full((n, k), EOS, dtype=torch.int64)
                src_i, col = going.nonzero(as_tuple=True)
                new_cum[src_i, slot[src_i, col]] = top[src_i, col]
                new_beam[src_i, slot[src_i, col]] = beam_of[src_i, col]
                new_tok[src_i, slot[src_i, col]] = tok_of[src_i, col]
                if bool(ending.any()):
                    for i, j in ending.nonzero().tolist():
                        ended[i].append((float(top[i, j]) / (t + 1) ** length_penalty,
                                         history[i, beam_of[i, j]].numpy().copy()))
                        if len(ended[i]) >= k:
                            done[i] = True
                            new_cum[i] = -math.inf
                history = torch.cat([history.gather(1, new_beam.unsqueeze(2).expand(-1, -1, history.shape[2])),
                                     new_tok.unsqueeze(2)], dim=2)
                cum, token = new_cum, new_tok.view(-1)
                if bool(done.all()):
                    break
                if t + 1 < max_len:
                    select = (base + new_beam).view(-1)  # within each source: a and K' need no reordering
                    h, c = h.index_select(0, select), c.index_select(0, select)
            length = history.shape[2]
            for i in range(n):
                if not bool(done[i]):
                    for j in range(k):
                        if math.isfinite(float(cum[i, j])):
                            ended[i].append((float(cum[i, j]) / length ** length_penalty, history[i, j].numpy()))
            best = [max(e, key=lambda item: item[0]) for e in ended]
        return [b[1] for b in best], np.array([b[0] for b in best])
