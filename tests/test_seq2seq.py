"""Tests of rnncore.AttentionDecoder and rnncore.Seq2Seq: gradients (float64 central differences of the module and
of the whole model's loss, and the decoder against the NumPy twins composed by hand), training on a tiny reversal
task, decoding through rnncore.decode (greedy, beam search, batch invariance, attention weights), scheduled
sampling, save/load, the date generator, and the argument errors."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnncore as rc
from rnncore import reference

from support.arrays import central_difference
from support.tolerances import assert_close, assert_identical, tol

# ---- helpers ----


def sampled_gradient_check(loss, arrays, analytic, rng, per_array=6, eps=1e-6):
    """Central differences of loss() at up to ``per_array`` random entries of each array (perturbed in place)
    against the analytic gradients, with the gradcheck tolerance."""
    for name, a in arrays.items():
        flat, g = a.reshape(-1), analytic[name].reshape(-1)
        picks = rng.choice(flat.size, size=min(per_array, flat.size), replace=False)
        for j in picks:
            np.testing.assert_allclose(g[j], central_difference(loss, flat, j, eps), err_msg=f"{name}[{j}]",
                                       **tol("gradcheck", np.float64))


DECODER_CASES = {
    "additive_before_lstm_all_options": dict(cell="lstm", attention="additive", energy_activation="relu",
                                             score_bias=True, normalize=True, value_size=3),
    "additive_before_gru_context_only": dict(cell="gru", attention="additive", input_size=0, bias=False),
    "additive_after_lstm_feeding": dict(cell="lstm", attention="additive", position="after", input_feeding=True),
    "dot_after_lstm_feeding": dict(cell="lstm", attention="dot", input_feeding=True, key_size=3, output_size=2),
    "general_after_gru": dict(cell="gru", attention="general", reset_after=False),
    "general_before_rnn": dict(cell="rnn", attention="general", position="before", nonlinearity="tanh"),
    "concat_after_rnn_feeding": dict(cell="rnn", attention="concat", input_feeding=True, attention_units=3),
}


def build_decoder(case, dtype=np.float64):
    kw = dict(input_size=2, hidden_size=3, key_size=4, dtype=dtype, seed=5)
    kw.update(DECODER_CASES[case])
    if kw["attention"] in ("additive", "concat"):
        kw.setdefault("attention_units", 2)
    return rc.AttentionDecoder(**kw)


def decoder_data(dec, rng, B=3, Tx=4, Ty=3, lengths=None):
    dt = dec.dtype
    data = dict(keys=rng.standard_normal((B, Tx, dec.key_size)).astype(dt),
                lengths=np.array([Tx, 0, 2][:B]) if lengths is None else lengths,
                h0=rng.standard_normal((B, dec.hidden_size)).astype(dt))
    data["values"] = (None if dec.value_size == dec.key_size and rng.random() < 0.5
                      else rng.standard_normal((B, Tx, dec.value_size)).astype(dt))
    data["x"] = None if dec.input_size == 0 else rng.standard_normal((B, Ty, dec.input_size)).astype(dt)
    if dec.kind.n_states == 2:
        data["c0"] = rng.standard_normal((B, dec.hidden_size)).astype(dt)
    if dec.input_feeding:
        data["o0"] = rng.standard_normal((B, dec.output_size)).astype(dt)
    up = dict(doutputs=rng.standard_normal((B, Ty, dec.output_size)), dalpha=rng.standard_normal((B, Ty, Tx)),
              dh=rng.standard_normal((B, dec.hidden_size)), dc=rng.standard_normal((B, dec.hidden_size)),
              do=rng.standard_normal((B, dec.output_size)))
    return data, {k: v.astype(dt) for k, v in up.items()}, Ty


def state_for(dec, data):
    """The decoder's state form: h0, (h0, c0) for an LSTM, with õ0 last under input feeding ((h0, o0), (h0, c0, o0))."""
    parts = [data["h0"]] + ([data["c0"]] if dec.kind.n_states == 2 else []) + (
        [data["o0"]] if dec.input_feeding else [])
    return parts[0] if len(parts) == 1 else tuple(parts)


def run_decoder(dec, data, Ty):
    dec.prepare(data["keys"], data["values"], data["lengths"])
    return dec(data["x"], state_for(dec, data), steps=Ty)


def decoder_loss(dec, data, up, Ty):
    outputs, alpha, final = run_decoder(dec, data, Ty)
    parts = final if isinstance(final, tuple) else (final,)
    total = np.sum(outputs * up["doutputs"]) + np.sum(alpha * up["dalpha"])
    return float(total + sum(np.sum(p * up[k]) for p, k in zip(parts, dstate_keys(dec))))


def dstate_keys(dec):
    return ["dh"] + (["dc"] if dec.kind.n_states == 2 else []) + (["do"] if dec.input_feeding else [])


# ---- AttentionDecoder: gradients ----

@pytest.mark.parametrize("case", list(DECODER_CASES))
def test_decoder_gradients_match_central_differences(case):
    rng = np.random.default_rng(11)
    dec = build_decoder(case)
    data, up, Ty = decoder_data(dec, rng)
    run_decoder(dec, data, Ty)
    keys = dstate_keys(dec)
    dstate = tuple(up[k] for k in keys) if len(keys) > 1 else up["dh"]
    dx, dstate0, dkeys, dvalues = dec.backward(up["doutputs"], up["dalpha"], dstate)
    analytic = {f"param.{k}": g.copy() for k, g in dec.gradients().items()}
    arrays = {f"param.{k}": p for k, p in dec.parameters().items()}
    shared_values = data["values"] is None
    analytic.update(keys=dkeys + dvalues if shared_values else dkeys, h0=dstate0[0] if isinstance(dstate0, tuple)
                    else dstate0)
    arrays.update(keys=data["keys"], h0=data["h0"])
    if not shared_values:
        analytic["values"], arrays["values"] = dvalues, data["values"]
    if dx is not None:
        analytic["x"], arrays["x"] = dx, data["x"]
    else:
        assert data["x"] is None
    if "c0" in data:
        analytic["c0"], arrays["c0"] = dstate0[1], data["c0"]
    if "o0" in data:
        analytic["o0"], arrays["o0"] = dstate0[-1], data["o0"]
    dec.eval()
    sampled_gradient_check(lambda: decoder_loss(dec, data, up, Ty), arrays, analytic, rng)
    assert set(analytic) >= {f"param.{k}" for k in dec.parameters()}


@pytest.mark.parametrize("case", ["additive_before_lstm_all_options", "dot_after_lstm_feeding",
                                  "general_after_gru", "concat_after_rnn_feeding"])
def test_decoder_matches_the_twins_composed_by_hand(case):
    """The module = key projection (NumPy) + reference.attention_decoder_forward/backward + the projection's and
    normalize's backward written out; float32 module against the float64 twins."""
    rng = np.random.default_rng(3)
    dec = build_decoder(case, np.float32)
    data, up, Ty = decoder_data(dec, rng)
    data["values"] = rng.standard_normal((3, 4, dec.value_size)).astype(np.float32)
    compare_with_twins(dec, data, up, Ty)


@settings(max_examples=80)
@given(attention=st.sampled_from(["additive", "dot", "general", "concat"]), position=st.sampled_from(["before",
       "after"]), feeding=st.booleans(), cell=st.sampled_from(["lstm", "gru", "rnn"]), bias=st.booleans(),
       options=st.booleans(), B=st.integers(1, 3), Tx=st.integers(1, 4), Ty=st.integers(1, 3), E=st.integers(0, 2),
       H=st.integers(1, 3), A=st.integers(1, 3), Dv=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_decoder_matches_the_twins_over_shapes(attention, position, feeding, cell, bias, options, B, Tx, Ty, E, H, A,
                                               Dv, seed):
    """Every attention, position, cell and option over small shapes (B, Tx, Ty, H, A, Dv = 1 included, E = 0,
    lengths with 0 and Tx), float32 module against the float64 twins."""
    feeding = feeding and position == "after"
    E = max(E, 1) if position == "after" and not feeding else E
    scored = attention in ("additive", "concat")
    additive_options = dict(energy_activation="relu", score_bias=True, normalize=True) if (
        options and attention == "additive") else {}
    dec = rc.AttentionDecoder(E, H, H if attention == "dot" else 2, value_size=Dv, cell=cell, attention=attention,
                              attention_units=A if scored else None, position=position, input_feeding=feeding,
                              bias=bias, dtype=np.float32, seed=seed, **additive_options)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, Tx + 1, B)
    lengths[0] = Tx
    data, up, Ty = decoder_data(dec, rng, B, Tx, Ty, lengths)
    data["values"] = rng.standard_normal((B, Tx, Dv)).astype(np.float32)
    compare_with_twins(dec, data, up, Ty)


def compare_with_twins(dec, data, up, Ty):
    """Runs the float32 module forward and backward and checks outputs, alpha and every gradient against
    reference.attention_decoder_forward/backward on the projected keys, with the projection's (and normalize's)
    backward written out here."""
    B = data["keys"].shape[0]
    outputs, alpha, _ = run_decoder(dec, data, Ty)
    dx, _, dkeys, dvalues = dec.backward(up["doutputs"], up["dalpha"])

    p = {k: v.astype(np.float64) for k, v in dec.parameters().items()}
    H, keys = dec.hidden_size, data["keys"].astype(np.float64)
    kw = dict(cell=dec.cell, position=dec.position, input_feeding=dec.input_feeding, **dec._cell_options)
    if dec.position == "after":
        kw.update(w_c=p["output_weight"], b_c=p.get("output_bias"))
    if dec.attention == "additive":
        w_k = p["key_weight"]
        w = p["score_weight"]
        w_v = p["gain"] * w / np.linalg.norm(w) if dec.normalize else w
        kw.update(score="additive", w_q=p["query_weight"], b_a=p.get("bias"), w_v=w_v,
                  score_bias=p.get("score_bias"), energy_activation=dec.energy_activation)
    elif dec.attention == "concat":
        w_k = p["weight"][:, H:]
        kw.update(score="additive", w_q=p["weight"][:, :H], w_v=p["score_weight"])
    else:
        w_k = p["weight"] if dec.attention == "general" else None
        kw.update(score="dot")
    projected = keys if w_k is None else keys @ w_k.T
    x = np.zeros((Ty, B, 0)) if data["x"] is None else data["x"].astype(np.float64).transpose(1, 0, 2)
    c0 = data["c0"].astype(np.float64) if "c0" in data else None
    ref = reference.attention_decoder_forward(x, data["h0"].astype(np.float64), c0, p["weight_ih"], p["weight_hh"],
                                              p.get("bias_ih"), p.get("bias_hh"), projected, data["values"],
                                              data["lengths"], o0=data.get("o0"), **kw)
    assert_close(outputs, ref[0].transpose(1, 0, 2), "kernel_vs_reference", np.float32, "outputs")
    assert_close(alpha, ref[2].transpose(1, 0, 2), "kernel_vs_reference", np.float32, "alpha")
    g = reference.attention_decoder_backward(ref[5], up["doutputs"].transpose(1, 0, 2),
                                             dalpha=up["dalpha"].transpose(1, 0, 2))
    grads = dec.gradients()
    assert_close(dvalues, g["dvalues"], "kernel_vs_reference", np.float32, "dvalues")
    assert_close(dkeys, g["dkeys"] if w_k is None else g["dkeys"] @ w_k, "kernel_vs_reference", np.float32, "dkeys")
    assert_close(grads["weight_ih"], g["dw_ih"], "kernel_vs_reference", np.float32, "weight_ih")
    assert_close(grads["weight_hh"], g["dw_hh"], "kernel_vs_reference", np.float32, "weight_hh")
    if dx is not None:
        assert_close(dx, g["dx"].transpose(1, 0, 2), "kernel_vs_reference", np.float32, "dx")
    if dec.attention == "additive":
        assert_close(grads["query_weight"], g["dw_q"], "kernel_vs_reference", np.float32, "query_weight")
        assert_close(grads["key_weight"], np.einsum("bta,btk->ak", g["dkeys"], keys), "kernel_vs_reference",
                     np.float32, "key_weight")
        if dec.normalize:   # TF-Addons' chain rule, written out once more
            norm = np.linalg.norm(w)
            w_hat = w / norm
            assert_close(grads["gain"], g["dw_v"] @ w_hat, "kernel_vs_reference", np.float32, "gain")
            assert_close(grads["score_weight"], p["gain"] / norm * (g["dw_v"] - (w_hat @ g["dw_v"]) * w_hat),
                         "kernel_vs_reference", np.float32, "score_weight")
    if dec.attention == "general":
        assert_close(grads["weight"], np.einsum("bth,btk->hk", g["dkeys"], keys), "kernel_vs_reference",
                     np.float32, "weight")
    if dec.attention == "concat":
        assert_close(grads["weight"], np.concatenate([g["dw_q"], np.einsum("bta,btk->ak", g["dkeys"], keys)], 1),
                     "kernel_vs_reference", np.float32, "weight")
    if dec.position == "after":
        assert_close(grads["output_weight"], g["dw_c"], "kernel_vs_reference", np.float32, "output_weight")


def test_decoder_tape_takes_calls_back_last_first_and_copies_its_source():
    rng = np.random.default_rng(4)
    dec = build_decoder("additive_after_lstm_feeding")
    data, up, Ty = decoder_data(dec, rng)
    data["values"] = None
    first = run_decoder(dec, data, Ty)[0]
    data2 = dict(data, keys=data["keys"] * 2.0)
    run_decoder(dec, data2, Ty)
    data["keys"][...] = 7.0                              # the caller reuses its buffer: backward is unaffected
    _, _, dkeys2, _ = dec.backward(up["doutputs"])
    dec.zero_grad()
    _, _, dkeys1, _ = dec.backward(up["doutputs"])
    grads1 = {k: g.copy() for k, g in dec.gradients().items()}
    dec.zero_grad()
    fresh = dict(data, keys=data2["keys"] / 2.0)
    again = run_decoder(dec, fresh, Ty)[0]
    assert_identical(again, first, "outputs")
    _, _, dkeys_fresh, _ = dec.backward(up["doutputs"])
    assert_identical(dkeys1, dkeys_fresh, "dkeys")
    for k, g in dec.gradients().items():
        assert_identical(g, grads1[k], k)
    with pytest.raises(RuntimeError, match="training-mode"):
        dec.backward(up["doutputs"])


# ---- Seq2Seq: the whole model's gradients ----

MODEL_CASES = {
    "lstm_additive_bidirectional_linear_bridge": dict(),
    "gru_general_feeding_two_layers": dict(cell="gru", attention="general", input_feeding=True, encoder_layers=2),
    "course_date_model": dict(feed_targets=False, source_one_hot=True, bridge="zeros", energy_activation="relu",
                              score_bias=True),
    "rnn_dot_unidirectional": dict(cell="rnn", attention="dot", bidirectional=False, encoder_hidden=3),
    "lstm_concat_normalized_additive": dict(attention="concat", target_embedding_size=2),
    "lstm_additive_normalize": dict(normalize=True, position="after", input_feeding=True),
}


def tiny_model(dtype=np.float64, **kw):
    base = dict(source_vocab=7, target_vocab=6, embedding_size=3, encoder_hidden=2, decoder_hidden=3, dtype=dtype,
                seed=1)
    base.update(kw)
    if base.get("attention", "additive") in ("additive", "concat"):
        base.setdefault("attention_units", 2)
    return rc.Seq2Seq(**base)


def tiny_batch(rng, B=3, Tx=4, Ty=4, lengths=(4, 0, 2)):
    """Sources with trailing padding (lengths incl. 0), targets [y; eos; pad] and inputs [bos; y; pad]."""
    source = rng.integers(3, 7, (B, Tx))
    for b, n in enumerate(lengths):
        source[b, n:] = 0
    target_lengths = rng.integers(1, Ty, B)
    targets = np.zeros((B, Ty), np.int64)
    inputs = np.zeros((B, Ty), np.int64)
    for b, n in enumerate(target_lengths):
        y = rng.integers(3, 6, n)
        targets[b, :n], targets[b, n] = y, 2
        inputs[b, 0], inputs[b, 1:n + 1] = 1, y
    return source, np.array(lengths), inputs, targets


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_gradients_match_central_differences_of_the_loss(case):
    rng = np.random.default_rng(8)
    model = tiny_model(**MODEL_CASES[case])
    batch = tiny_batch(rng)
    model.loss(*batch)
    model.loss_backward()
    analytic = {k: g.copy() for k, g in model.gradients().items()}
    model.eval()
    sampled_gradient_check(lambda: model.loss(*batch), model.parameters(), analytic, rng, per_array=4)


def test_model_backward_equals_loss_backward_and_accumulates():
    rng = np.random.default_rng(2)
    model = tiny_model()
    source, lengths, inputs, targets = tiny_batch(rng)
    logits, alpha = model(source, lengths, inputs)
    assert logits.shape == (3, 4, 6) and alpha.shape == (3, 4, 4)
    _, dlogits = rc.losses.softmax_cross_entropy(logits, targets, mask=targets != 0)
    model.backward(dlogits)
    once = {k: g.copy() for k, g in model.gradients().items()}
    model.loss(source, lengths, inputs, targets)
    model.loss_backward()
    for k, g in model.gradients().items():
        assert_close(g, 2 * once[k], "kernel_vs_reference", np.float64, k)
    names = list(model.parameters())
    assert names[0] == "source_embedding.weight" and "decoder.query_weight" in names and "encoder.weight_ih_l0" \
        in names and names[-1] == "output.bias"


# ---- training, decoding ----

def reversal_batch(rng, B, vocab=10, shortest=2, longest=6):
    """Sources of random tokens 3..vocab-1, targets their reversal."""
    lengths = rng.integers(shortest, longest + 1, B)
    source = np.zeros((B, longest), np.int64)
    inputs = np.zeros((B, longest + 1), np.int64)
    targets = np.zeros((B, longest + 1), np.int64)
    for b, n in enumerate(lengths):
        s = rng.integers(3, vocab, n)
        source[b, :n] = s
        inputs[b, 0], inputs[b, 1:n + 1] = 1, s[::-1]
        targets[b, :n], targets[b, n] = s[::-1], 2
    return source, lengths, inputs, targets


@pytest.fixture(scope="module")
def trained():
    """A Seq2Seq trained on reversal (Adam, gradient clipping), with its last losses."""
    rng = np.random.default_rng(0)
    model = rc.Seq2Seq(10, 10, embedding_size=16, encoder_hidden=24, decoder_hidden=32, attention_units=16,
                       seed=0)
    opt = rc.optim.Adam(model, lr=0.02)
    losses = []
    for _ in range(400):
        model.zero_grad()
        losses.append(model.loss(*reversal_batch(rng, 32)))
        model.loss_backward()
        rc.clip_grad_norm(model, 5.0)
        opt.step()
    return model.eval(), losses


def test_reversal_trains_to_low_loss(trained):
    _, losses = trained
    assert losses[0] > 1.5 and np.mean(losses[-10:]) < 0.2, (losses[0], losses[-10:])


def test_greedy_and_beam_search_reverse_and_beam_one_is_greedy(trained):
    model, _ = trained
    source, lengths, _, _ = reversal_batch(np.random.default_rng(99), 20)
    sources = [s[:n] for s, n in zip(source, lengths)]
    greedy = rc.decode.greedy(model, sources, model.bos_index, model.eos_index, 8)
    beam = rc.decode.beam_search(model, sources, model.bos_index, model.eos_index, 8, beam_size=4)
    one = rc.decode.beam_search(model, sources, model.bos_index, model.eos_index, 8, beam_size=1,
                                length_penalty=0.0)
    correct = [np.array_equal(t[0], s[::-1]) for t, s in zip(beam.tokens, sources)]
    assert np.mean(correct) >= 0.8, correct
    assert np.mean([np.array_equal(t, s[::-1]) for t, s in zip(greedy.tokens, sources)]) >= 0.8
    for g, b in zip(greedy.tokens, one.tokens):
        assert_identical(b[0], g, "tokens")
    assert_identical(one.log_probs[:, 0], greedy.scores, "scores")


def test_beam_search_is_batch_invariant(trained):
    """A source's hypotheses are the same bits decoded alone or among others (issue 13): rnncore.decode runs the
    model under rnncore.ops.row_invariant(), so every product computes a row from that row alone."""
    model, _ = trained
    source, lengths, _, _ = reversal_batch(np.random.default_rng(5), 7)
    sources = [s[:n] for s, n in zip(source, lengths)]
    together = rc.decode.beam_search(model, sources, 1, 2, 8, beam_size=3, n_best=3, return_attention=True)
    for i, s in enumerate(sources):
        alone = rc.decode.beam_search(model, [s], 1, 2, 8, beam_size=3, n_best=3, return_attention=True)
        assert_identical(alone.scores[0], together.scores[i], "scores", f"source {i}")
        assert_identical(alone.log_probs[0], together.log_probs[i], "log_probs", f"source {i}")
        assert_identical(alone.finished[0], together.finished[i], "finished", f"source {i}")
        for j in range(3):
            assert_identical(alone.tokens[0][j], together.tokens[i][j], "tokens", f"source {i} hypothesis {j}")
            n = len(s)
            assert_identical(alone.attention[0][j], together.attention[i][j][:, :n], "attention",
                             f"source {i} hypothesis {j}")
            assert not together.attention[i][j][:, n:].any()


def test_greedy_and_sampling_are_batch_invariant(trained):
    """Greedy: tokens, scores and attention the same bits alone or among others. Sampling draws its uniforms for
    the whole batch, so a source's tokens depend on its place; their scores are the same bits as that source's
    sequence_log_prob alone."""
    model, _ = trained
    source, lengths, _, _ = reversal_batch(np.random.default_rng(8), 9)
    sources = [s[:n] for s, n in zip(source, lengths)]
    together = rc.decode.greedy(model, sources, 1, 2, 8, return_attention=True)
    sampled = rc.decode.sample(model, sources, 1, 2, 8, temperature=1.5, seed=3)
    for i, s in enumerate(sources):
        alone = rc.decode.greedy(model, [s], 1, 2, 8, return_attention=True)
        assert_identical(alone.tokens[0], together.tokens[i], "tokens", f"source {i}")
        assert_identical(alone.scores[0], together.scores[i], "scores", f"source {i}")
        assert_identical(alone.attention[0], together.attention[i][:, :len(s)], "attention", f"source {i}")
        eos = 2 if sampled.finished[i] else None
        replayed = rc.decode.sequence_log_prob(model, [s], [sampled.tokens[i]], 1, eos)
        assert_identical(replayed[0], sampled.scores[i], "sampled scores", f"source {i}")


def test_padded_array_sources_equal_a_list_of_sequences(trained):
    model, _ = trained
    source, lengths, _, _ = reversal_batch(np.random.default_rng(6), 5)
    as_list = rc.decode.greedy(model, [s[:n] for s, n in zip(source, lengths)], 1, 2, 8)
    as_array = rc.decode.greedy(model, source, 1, 2, 8)
    for a, b in zip(as_list.tokens, as_array.tokens):
        assert_identical(a, b, "tokens")


def test_returned_attention_equals_the_teacher_forced_models(trained):
    """Each kept hypothesis' attention rows are what the model gives when fed that hypothesis (teacher forcing)."""
    model, _ = trained
    source, lengths, _, _ = reversal_batch(np.random.default_rng(7), 4)
    sources = [s[:n] for s, n in zip(source, lengths)]
    for result in (rc.decode.greedy(model, sources, 1, 2, 8, return_attention=True),
                   rc.decode.sample(model, sources, 1, 2, 8, temperature=2.0, seed=0, return_attention=True),
                   rc.decode.beam_search(model, sources, 1, 2, 8, beam_size=3, n_best=2, return_attention=True)):
        for i, s in enumerate(sources):
            hyps = result.tokens[i] if isinstance(result.tokens[i], list) else [result.tokens[i]]
            atts = result.attention[i] if isinstance(result.attention[i], list) else [result.attention[i]]
            for toks, att in zip(hyps, atts):
                assert att.shape == (len(toks), source.shape[1])
                _, alpha = model(s[None], [len(s)], np.concatenate([[1], toks])[None].astype(np.int64))
                assert_close(att[:, :len(s)], alpha[0, :len(toks), :len(s)], "kernel_vs_reference", np.float32)
                np.testing.assert_array_equal(att[:, len(s):], 0.0)


def test_reorder_maps_rows_to_their_sources_without_copying_them(trained):
    model, _ = trained
    state = model.start([np.array([3, 4, 5]), np.array([6, 7])])
    expanded = model.reorder(state, np.array([0, 0, 1, 1]))
    assert expanded["source"] is state["source"]            # the N prepared sources, never gathered
    assert_identical(expanded["rows"], np.array([0, 0, 1, 1]), "rows")
    within = model.reorder(expanded, np.array([1, 0, 3, 3]))
    assert within["source"] is state["source"]
    assert_identical(within["h"], expanded["h"][[1, 0, 3, 3]], "h")
    across = model.reorder(expanded, np.array([2, 0, 1, 3]))
    assert across["source"] is state["source"]
    assert_identical(across["rows"], np.array([1, 0, 0, 1]), "rows")


def test_step_log_probs_are_normalised_and_match_the_teacher_forced_logits(trained):
    model, _ = trained
    src = np.array([[4, 5, 6, 0]])
    state = model.start(src)
    log_probs, state = model.step(np.array([1]), state)
    log_probs2, _ = model.step(np.array([6]), state)
    assert log_probs.dtype == np.float32
    assert_close(np.exp(log_probs).sum(axis=1), [1.0], "kernel_vs_reference", np.float32)
    logits, _ = model(src, [3], np.array([[1, 6]]))
    shifted = logits[0].astype(np.float64) - logits[0].max(axis=1, keepdims=True)
    expected = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert_close(np.stack([log_probs[0], log_probs2[0]]), expected, "kernel_vs_reference", np.float32)


# ---- scheduled sampling ----

def test_ratio_one_is_teacher_forcing_exactly():
    rng = np.random.default_rng(12)
    batch = tiny_batch(rng)
    a, b = tiny_model(dtype=np.float32), tiny_model(dtype=np.float32)
    la = a.loss(*batch)
    a.loss_backward()
    lb = b.loss(*batch, teacher_forcing_ratio=1.0, seed=3)
    b.loss_backward()
    assert la == lb
    for k, g in a.gradients().items():
        assert_identical(b.gradients()[k], g, k)


def test_scheduled_sampling_is_reproducible_and_mixes_predictions():
    rng = np.random.default_rng(13)
    model = tiny_model(dtype=np.float32)
    source, lengths, inputs, targets = tiny_batch(rng, B=6, Tx=4, Ty=5, lengths=(4, 3, 2, 1, 0, 4))
    mixed = model.scheduled_inputs(source, lengths, inputs, 0.5, seed=4)
    assert_identical(model.scheduled_inputs(source, lengths, inputs, 0.5, seed=4), mixed, "inputs")
    assert_identical(mixed[:, 0], inputs[:, 0], "bos")
    model.eval()
    predictions = np.argmax(model(source, lengths, inputs)[0], axis=-1)
    model.train()
    none_forced = model.scheduled_inputs(source, lengths, inputs, 0.0, seed=4)
    assert_identical(none_forced[:, 1:], predictions[:, :-1], "predictions")
    teacher = np.random.default_rng(4).random(inputs.shape) < 0.5
    expected = np.where(teacher, inputs, np.concatenate([inputs[:, :1], predictions[:, :-1]], axis=1))
    expected[:, 0] = inputs[:, 0]
    assert_identical(mixed, expected, "mixed")
    first = model.loss(source, lengths, inputs, targets, teacher_forcing_ratio=0.5, seed=4)
    model.loss_backward()
    grads = {k: g.copy() for k, g in model.gradients().items()}
    model.zero_grad()
    assert model.loss(source, lengths, inputs, targets, teacher_forcing_ratio=0.5, seed=4) == first
    model.loss_backward()
    for k, g in model.gradients().items():
        assert_identical(g, grads[k], k)
    assert len(model.decoder._tape) == 0 and len(model.encoder._tape) == 0   # the first pass recorded nothing


# ---- save / load, datasets ----

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(14)
    model = tiny_model(dtype=np.float32, attention="general", input_feeding=True, cell="gru")
    batch = tiny_batch(rng)
    for p in model.parameters().values():
        p += 0.01
    path = tmp_path / "s2s.npz"
    rc.save(model, path)
    loaded = rc.load(path)
    assert type(loaded) is rc.Seq2Seq and loaded.get_config() == model.get_config()
    model.eval()
    loaded.eval()
    assert_identical(loaded(*batch[:3])[0], model(*batch[:3])[0], "logits")
    decoder = model.decoder
    rc.save(decoder, tmp_path / "dec.npz")
    assert rc.load(tmp_path / "dec.npz").get_config() == decoder.get_config()


def test_make_dates_is_reproducible_and_encodes():
    pairs = rc.datasets.make_dates(200, seed=1)
    assert pairs == rc.datasets.make_dates(200, seed=1) and pairs != rc.datasets.make_dates(200, seed=2)
    human, iso = rc.datasets.date_vocabularies()
    for text, date in pairs:
        assert len(date) == 10 and date[4] == date[7] == "-"
        assert human.decode(human.encode(text)) == text and "?" not in human.decode(human.encode(text))
    batch = rc.datasets.encode_pairs(pairs[:5], human, iso)
    assert batch.target_inputs[:, 0].tolist() == [1] * 5 and (batch.targets[:, 10] == 2).all()
    assert iso.decode(batch.targets[0]) == pairs[0][1]


# ---- errors ----

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(attention="luong"), ValueError, "attention"),
    (dict(attention="dot"), ValueError, "key_size"),
    (dict(position="before", input_feeding=True), ValueError, "input_feeding"),
    (dict(attention="dot", key_size=3, score_bias=True), ValueError, "score_bias"),
    (dict(energy_activation="tanh"), ValueError, "energy_activation"),
    (dict(position="after", input_size=0), ValueError, "input_size"),
    (dict(output_size=4), ValueError, "output_size"),
    (dict(cell="lstmx"), ValueError, "cell"),
])
def test_decoder_constructor_errors(kwargs, error, match):
    base = dict(input_size=2, hidden_size=3, key_size=4)
    base.update(kwargs)
    with pytest.raises(error, match=match):
        rc.AttentionDecoder(**base)


def test_decoder_call_errors():
    dec = rc.AttentionDecoder(0, 3, 4)
    with pytest.raises(RuntimeError, match="prepare"):
        dec(None, steps=2)
    dec.prepare(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="steps"):
        dec(None)
    with pytest.raises(ValueError, match="x must be None"):
        dec(np.zeros((2, 2, 1), np.float32), steps=2)
    with pytest.raises(TypeError, match="keys"):
        dec.prepare(np.zeros((2, 3, 4), np.float64))
    with pytest.raises(ValueError, match="lengths"):
        dec.prepare(np.zeros((2, 3, 4), np.float32), lengths=[4, 1])
    with pytest.raises(TypeError, match="state"):
        dec(None, state=np.zeros((2, 3), np.float32), steps=1)


def test_model_errors():
    model = tiny_model(dtype=np.float32)
    rng = np.random.default_rng(0)
    source, lengths, inputs, targets = tiny_batch(rng)
    with pytest.raises(ValueError, match="teacher_forcing_ratio"):
        model.loss(source, lengths, inputs, targets, teacher_forcing_ratio=1.5)
    with pytest.raises(ValueError, match="source"):
        model(source + 10, lengths, inputs)
    with pytest.raises(ValueError, match="lengths"):
        model(source, [5, 0, 1], inputs)
    with pytest.raises(ValueError, match="source must hold at least one sequence"):
        model(source[:0], lengths[:0], inputs[:0])
    with pytest.raises(ValueError, match="targets"):
        model.loss(source, lengths, inputs, targets[:, :2])
    with pytest.raises(RuntimeError, match="loss_backward"):
        model.loss_backward()
    model.loss(source, lengths, inputs, targets)
    model.eval()
    with pytest.raises(RuntimeError, match="loss_backward"):
        model.loss_backward()
    model.train()
    with pytest.raises(ValueError, match="feed_targets"):
        tiny_model(feed_targets=False).loss(source, lengths, inputs, targets, teacher_forcing_ratio=0.5)
    with pytest.raises(ValueError, match="pad_index"):
        tiny_model(pad_index=6)
    with pytest.raises(TypeError, match="attention"):
        rc.decode.greedy(rc.decode.LanguageModel(rc.Embedding(4, 2), rc.GRUCell(2, 3), rc.Linear(3, 4)), 2, 1, 2,
                         3, return_attention=True)


def test_one_hot_sources_equal_an_identity_embedding():
    """source_one_hot=True computes what an Embedding fixed to the identity would (the encoder never reads padded
    steps, so the embedding's zeroed padding row makes no difference)."""
    rng = np.random.default_rng(15)
    one_hot = tiny_model(source_one_hot=True)
    embedded = tiny_model(embedding_size=7, target_embedding_size=3)   # embedding_size = source_vocab
    state = {k: v for k, v in one_hot.state_dict().items()}
    state["source_embedding.weight"] = np.eye(7)
    embedded.load_state_dict(state)
    batch = tiny_batch(rng)
    for m in (one_hot, embedded):
        m.loss(*batch)
        m.loss_backward()
    assert_close(embedded(*batch[:3])[0], one_hot(*batch[:3])[0], "kernel_vs_reference", np.float64, "logits")
    for k, g in one_hot.gradients().items():
        assert_close(embedded.gradients()[k], g, "kernel_vs_reference", np.float64, k)
    assert "source_embedding.weight" not in one_hot.parameters()


def test_model_tape_two_forwards_then_two_backwards_last_first():
    rng = np.random.default_rng(16)
    model = tiny_model(cell="gru", attention="general", input_feeding=True)
    first, second = tiny_batch(rng), tiny_batch(rng, B=2, Tx=3, Ty=2, lengths=(3, 1))
    expected = {}
    for batch in (first, second):
        model.zero_grad()
        model.loss(*batch)
        model.loss_backward()
        for k, g in model.gradients().items():
            expected[k] = expected.get(k, 0.0) + g
    model.zero_grad()
    model.loss(*first)
    model.loss(*second)
    model.loss_backward()
    model.loss_backward()
    for k, g in model.gradients().items():
        assert_close(g, expected[k], "kernel_vs_reference", np.float64, k)


# ---- reviewed defects: validation before anything is recorded, padding, the fed output, options ----

def test_rejected_loss_records_nothing():
    rng = np.random.default_rng(20)
    model = tiny_model()
    batch = tiny_batch(rng)
    model.loss(*batch)
    model.loss_backward()
    expected = {k: g.copy() for k, g in model.gradients().items()}
    model.zero_grad()
    model.loss(*batch)
    bad_targets = np.full_like(batch[3], 99)
    with pytest.raises(ValueError, match="targets"):
        model.loss(*batch[:3], bad_targets)
    with pytest.raises(TypeError, match="seed"):
        model.loss(*batch, teacher_forcing_ratio=0.5, seed=1.5)
    model.loss_backward()
    for k, g in model.gradients().items():
        assert_identical(g, expected[k], k)
    assert all(len(m._tape) == 0 for m in model.modules() if isinstance(m, rc.Module))


def test_rejected_model_gradient_does_not_use_up_the_call():
    rng = np.random.default_rng(21)
    model = tiny_model(dtype=np.float32)
    source, lengths, inputs, _ = tiny_batch(rng)
    logits, alpha = model(source, lengths, inputs)
    dlogits = rng.standard_normal(logits.shape).astype(np.float32)
    for bad, error, match in [(dict(dlogits=dlogits[..., :-1]), ValueError, "dlogits"),
                              (dict(dlogits=dlogits.astype(np.float64)), TypeError, "dlogits"),
                              (dict(dlogits=dlogits, dalpha=np.zeros(alpha.shape[:2] + (9,), np.float32)), ValueError,
                               "dalpha"),
                              (dict(dlogits=dlogits, dalpha=alpha.astype(np.float64)), TypeError, "dalpha")]:
        with pytest.raises(error, match=match):
            model.backward(**bad)
    model.backward(dlogits)
    once = {k: g.copy() for k, g in model.gradients().items()}
    model.zero_grad()
    model(source, lengths, inputs)
    model.backward(dlogits)
    for k, g in model.gradients().items():
        assert_identical(g, once[k], k)
    assert all(len(m._tape) == 0 for m in model.modules() if isinstance(m, rc.Module))


def test_rejected_decoder_gradient_does_not_use_up_the_call():
    rng = np.random.default_rng(22)
    dec = build_decoder("additive_before_lstm_all_options")
    data, up, Ty = decoder_data(dec, rng)
    run_decoder(dec, data, Ty)
    for bad, match in [(dict(dalpha=up["dalpha"][..., :-1]), "dalpha"), (dict(dstate=up["dh"]), "dstate"),
                       (dict(dstate=(up["dh"][:1], None)), "dstate")]:
        with pytest.raises((ValueError, TypeError), match=match):
            dec.backward(up["doutputs"], **bad)
    dec.backward(up["doutputs"])
    with pytest.raises(RuntimeError, match="training-mode"):
        dec.backward(up["doutputs"])


@pytest.mark.parametrize("attention", ["additive", "dot", "general", "concat"])
def test_non_finite_padding_leaves_every_gradient_finite(attention):
    """Keys and values past each length may hold NaN/inf: the weight gradients must not meet them (0 · NaN)."""
    rng = np.random.default_rng(23)
    kw = dict(attention_units=2) if attention in ("additive", "concat") else {}
    dec = rc.AttentionDecoder(2, 4, 4, attention=attention, dtype=np.float64, seed=0, **kw)
    keys = rng.standard_normal((2, 3, 4))
    keys[1, 2] = np.nan
    keys[0, 2] = np.inf
    values = rng.standard_normal((2, 3, 4))
    values[1, 1:] = np.nan
    for v in (None, values):
        dec.zero_grad()
        dec.prepare(keys, v, lengths=[2, 1 if v is not None else 2])
        outputs, alpha, _ = dec(rng.standard_normal((2, 2, 2)))
        _, _, dkeys, dvalues = dec.backward(np.ones_like(outputs), np.ones_like(alpha))
        assert np.isfinite(outputs).all() and np.isfinite(alpha).all()
        for k, g in dec.gradients().items():
            assert np.isfinite(g).all(), k
        assert np.isfinite(dkeys).all() and np.isfinite(dvalues).all()


@pytest.mark.parametrize("case", ["additive_after_lstm_feeding", "dot_after_lstm_feeding", "concat_after_rnn_feeding"])
def test_input_feeding_state_continues_a_call(case):
    """Two chunk calls, each continuing from the other's returned state (which carries õ), equal one call: forward,
    and the gradients with the second chunk's dstate0 fed back as the first chunk's dstate."""
    rng = np.random.default_rng(24)
    dec = build_decoder(case)
    data, up, Ty = decoder_data(dec, rng, Ty=4)
    dec.prepare(data["keys"], data["values"], data["lengths"])
    state = state_for(dec, data)
    full, alpha, final = dec(data["x"], state)
    dx, dstate0, dkeys, dvalues = dec.backward(up["doutputs"], up["dalpha"])
    expected = {k: g.copy() for k, g in dec.gradients().items()}
    dec.zero_grad()
    first, alpha1, middle = dec(data["x"][:, :2], state)
    assert len(middle) == dec.kind.n_states + 1          # (h, c, o) for an LSTM, (h, o) otherwise
    second, alpha2, final2 = dec(data["x"][:, 2:], middle)
    assert_close(np.concatenate([first, second], 1), full, "kernel_vs_reference", np.float64, "outputs")
    assert_close(np.concatenate([alpha1, alpha2], 1), alpha, "kernel_vs_reference", np.float64, "alpha")
    for a, b in zip(final2, final):
        assert_close(a, b, "kernel_vs_reference", np.float64, "final state")
    dx2, dmiddle, dkeys2, dvalues2 = dec.backward(up["doutputs"][:, 2:], up["dalpha"][:, 2:])
    dx1, dstate1, dkeys1, dvalues1 = dec.backward(up["doutputs"][:, :2], up["dalpha"][:, :2], dmiddle)
    assert_close(np.concatenate([dx1, dx2], 1), dx, "kernel_vs_reference", np.float64, "dx")
    assert_close(dkeys1 + dkeys2, dkeys, "kernel_vs_reference", np.float64, "dkeys")
    assert_close(dvalues1 + dvalues2, dvalues, "kernel_vs_reference", np.float64, "dvalues")
    for a, b in zip(dstate1, dstate0):
        assert_close(a, b, "kernel_vs_reference", np.float64, "dstate0")
    for k, g in dec.gradients().items():
        assert_close(g, expected[k], "kernel_vs_reference", np.float64, k)


@pytest.mark.parametrize("kwargs,match", [
    (dict(bos_index=0), "bos_index.*pad_index"),
    (dict(eos_index=0), "eos_index.*pad_index"),
    (dict(attention="dot", encoder_hidden=3, decoder_hidden=6, attention_units=5), "attention_units"),
    (dict(attention="general", attention_units=5), "attention_units"),
    (dict(feed_targets=False, target_embedding_size=4), "target_embedding_size"),
    (dict(feed_targets=False, attention="general"), "feed_targets.*input_feeding"),
    (dict(feed_targets=False, attention="additive", position="after"), "feed_targets.*input_feeding"),
])
def test_model_rejects_conflicting_options(kwargs, match):
    base = dict(source_vocab=7, target_vocab=6, embedding_size=3, encoder_hidden=2, decoder_hidden=3, seed=1)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rc.Seq2Seq(**base)


def test_model_attention_units_default():
    base = dict(source_vocab=7, target_vocab=6, embedding_size=3, encoder_hidden=2, decoder_hidden=3)
    assert rc.Seq2Seq(**base).decoder.attention_units == 10
    assert rc.Seq2Seq(**base, attention="concat").decoder.attention_units == 10
    assert rc.Seq2Seq(**base, attention="general").decoder.attention_units is None
    model = rc.Seq2Seq(**base, feed_targets=False, attention="general", input_feeding=True)
    assert rc.Seq2Seq(**model.get_config()).get_config() == model.get_config()


def test_error_messages_name_the_argument():
    dec = rc.AttentionDecoder(2, 3, 3, seed=0)
    with pytest.raises(ValueError, match="B >= 1"):
        dec.prepare(np.zeros((0, 2, 3), np.float32))
    source = dec.project(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(TypeError, match="h "):
        dec.step(np.zeros((1, 2), np.float32), source, [[0.0, 0.0, 0.0]], None)
    with pytest.raises(TypeError, match="seed"):
        tiny_model().scheduled_inputs(np.array([[3]]), None, np.array([[1, 3]]), 0.5, seed=1.5)
    with pytest.raises(TypeError, match="seed"):
        rc.datasets.make_dates(3, seed="a")


def test_score_bias_reaches_the_op_as_a_0d_array_of_the_dtype():
    """A Python float misses the op's exact-call fast path at every decoding step (≈ 45 → 30 µs per model.step)."""
    for dtype in (np.float32, np.float64):
        dec = rc.AttentionDecoder(2, 3, 3, score_bias=True, dtype=dtype, seed=0)
        bias = dec._op_weights()["score_bias"]
        assert type(bias) is np.ndarray and bias.shape == () and bias.dtype == dtype


def _decoder_gradients(B, Ty, mutate):
    rng = np.random.default_rng(0)
    dec = rc.AttentionDecoder(4, 5, 6, dtype=np.float64, seed=1)
    dec.prepare(rng.standard_normal((B, 7, 6)))
    x = rng.standard_normal((B, Ty, 4))
    outputs, alpha, _ = dec(x)
    if mutate:
        alpha[...] = 0.5          # the caller's own result: e.g. normalised or masked for plotting, in place
    dx, _, dkeys, dvalues = dec.backward(np.ones_like(outputs))
    return [dx, dkeys, dvalues] + [g.copy() for g in dec.gradients().values()]


@pytest.mark.parametrize("B, Ty", [(1, 3), (2, 1), (1, 1), (2, 3)])
def test_decoder_returned_alpha_is_not_the_workspace_alpha(B, Ty):
    """A training call hands out a copy of alpha, whatever B and Ty: changing it does not reach the backward
    (at B = 1 or Ty = 1 the transposed view was already contiguous and was handed out as is: review of 6143135)."""
    for expected, got in zip(_decoder_gradients(B, Ty, False), _decoder_gradients(B, Ty, True)):
        np.testing.assert_array_equal(got, expected)


def _seq2seq_gradients(B, Ty, mutate):
    rng = np.random.default_rng(0)
    model = rc.Seq2Seq(9, 8, embedding_size=4, encoder_hidden=5, decoder_hidden=6, attention_units=3,
                       dtype=np.float64, seed=0)
    source = rng.integers(3, 9, size=(B, 5))
    targets_in = rng.integers(3, 8, size=(B, Ty))
    logits, alpha = model(source, None, targets_in)
    if mutate:
        alpha *= 0.0
    model.backward(np.ones_like(logits))
    return [g.copy() for g in model.gradients().values()]


@pytest.mark.parametrize("B, Ty", [(1, 4), (3, 1)])
def test_seq2seq_returned_alpha_is_not_the_workspace_alpha(B, Ty):
    for expected, got in zip(_seq2seq_gradients(B, Ty, False), _seq2seq_gradients(B, Ty, True)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("attention, name", [("additive", "key_weight"), ("general", "weight")])
def test_key_projection_backward_after_reregistering_its_weight(attention, name):
    """A key matrix re-registered with another shape between forward and backward is refused by name, not read
    with the recorded call's shapes (review of 275c6c9)."""
    rng = np.random.default_rng(0)
    dec = rc.AttentionDecoder(4, 5, 6, attention=attention, attention_units=3 if attention == "additive" else None,
                              dtype=np.float64, seed=1)
    dec.prepare(rng.standard_normal((2, 7, 6)))
    outputs, _, _ = dec(rng.standard_normal((2, 3, 4)))
    rows, cols = dec._params[name].shape
    dec.register_parameter(name, np.ones((rows + 1, cols)))   # another shape: the recorded call cannot use it
    with pytest.raises(ValueError):
        dec.backward(np.ones_like(outputs))
