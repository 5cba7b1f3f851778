"""rnncore.Sequential and rnncore.LastHidden (issue 12, item 10): the automatic backward against manual chaining and
float64 central differences (Embedding -> LSTM -> LastHidden -> Linear, with lengths, bidirectional), the plumbing
rules, indexing, repr, configs and the chain's own tape."""

import copy

import numpy as np
import pytest

import rnncore as rc

from support.arrays import numerical_gradient
from support.tolerances import assert_close

V, E, H, C = 7, 3, 4, 2


def classifier(bidirectional=True, num_layers=1, dtype=np.float64):
    D = 2 if bidirectional else 1
    return rc.Sequential(
        rc.Embedding(V, E, padding_idx=0, dtype=dtype, seed=1),
        rc.LSTM(E, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True, dtype=dtype, seed=2),
        rc.LastHidden(),
        rc.Linear(D * H, C, dtype=dtype, seed=3))


def batch(rng, B=3, T=5):
    lengths = np.array([5, 2, 4][:B])
    tokens = np.where(np.arange(T) < lengths[:, None], rng.integers(1, V, (B, T)), 0)
    return tokens, lengths


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional", "unidirectional"])
def test_backward_matches_manual_chaining(bidirectional, rng):
    model = classifier(bidirectional, num_layers=2)
    embed, lstm, _, head = (copy.deepcopy(m) for m in model)
    tokens, lengths = batch(rng)
    out = model(tokens, lengths=lengths)
    _, (h_n, _) = lstm(embed(tokens), lengths=lengths)
    last = np.concatenate([h_n[-2], h_n[-1]], 1) if bidirectional else h_n[-1]  # torch users' expression
    np.testing.assert_array_equal(out, head(last))
    dlogits = rng.standard_normal(out.shape)
    assert model.backward(dlogits) is None  # the Embedding ends the chain
    dh = head.backward(dlogits)
    dh_n = np.zeros_like(h_n)
    dh_n[-2 if bidirectional else -1:] = np.stack(np.split(dh, 2 if bidirectional else 1, axis=1))
    dx, _ = lstm.backward(None, (dh_n, None))
    embed.backward(dx)
    manual = {f"{i}.{k}": g for i, m in enumerate([embed, lstm, None, head]) if m is not None
              for k, g in m.gradients().items()}
    assert model.gradients().keys() == manual.keys()
    for name, g in model.gradients().items():
        assert_close(g, manual[name], "kernel_vs_reference", np.float64, name)


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional", "unidirectional"])
def test_gradients_match_float64_central_differences(bidirectional, rng):
    model = classifier(bidirectional)
    tokens, lengths = batch(rng)
    up = rng.standard_normal((3, C))

    def loss():
        return float(np.sum(model(tokens, lengths=lengths) * up))

    model(tokens, lengths=lengths)
    model.backward(up)
    grads = {k: g.copy() for k, g in model.gradients().items()}
    model.eval()
    for name, p in model.parameters().items():
        assert_close(grads[name], numerical_gradient(loss, p), "gradcheck", np.float64, name)
    assert not grads["0.weight"][0].any()  # padding_idx


def test_a_layer_passes_its_outputs_on_and_gradients_flow_back_to_x(rng):
    """Without LastHidden, a layer passes y on (its state dropped); the chain returns dx for a float input."""
    model = rc.Sequential(rc.GRU(3, H, dtype=np.float64, seed=0), rc.Linear(H, 2, dtype=np.float64, seed=1))
    x = rng.standard_normal((4, 2, 3))
    up = rng.standard_normal((4, 2, 2))
    out = model(x, lengths=[4, 2])
    assert out.shape == (4, 2, 2)
    dx = model.backward(up)

    def loss():
        return float(np.sum(model(x, lengths=[4, 2]) * up))

    model.eval()
    assert_close(dx, numerical_gradient(loss, x), "gradcheck", np.float64, "dx")


def test_a_chain_ending_in_a_layer_returns_its_whole_output(rng):
    model = rc.Sequential(rc.Linear(3, 3, dtype=np.float64, seed=0), rc.LSTM(3, 2, dtype=np.float64, seed=1))
    x = rng.standard_normal((4, 2, 3))
    y, (h_n, c_n) = model(x)
    dx = model.backward(np.zeros_like(y), (np.ones_like(h_n), None))
    assert dx.shape == x.shape and dx.any()


def test_any_number_of_calls_then_backwards_in_reverse_order(rng):
    model = classifier()
    twin = copy.deepcopy(model)
    (t1, l1), (t2, l2) = batch(rng), batch(rng, B=2)
    d1, d2 = rng.standard_normal((3, C)), rng.standard_normal((2, C))
    model(t1, lengths=l1)
    model(t2, lengths=l2)
    model.backward(d2)
    model.backward(d1)
    for tokens, lengths, d in ((t1, l1, d1), (t2, l2, d2)):
        twin(tokens, lengths=lengths)
        twin.backward(d)
    for name, g in model.gradients().items():
        assert_close(g, twin.gradients()[name], "kernel_vs_reference", np.float64, name)
    with pytest.raises(RuntimeError, match="Sequential.backward needs a training-mode forward first: all 2"):
        model.backward(d1)


def test_a_failed_call_leaves_nothing_recorded(rng):
    """A call that fails in the LSTM (bad lengths) after the Embedding recorded it: the Embedding's entry is dropped,
    so the backward of the call before pairs the right entries (else it would take the failed call's indices)."""
    model = classifier()
    twin = copy.deepcopy(model)
    tokens, lengths = batch(rng)
    d = rng.standard_normal((3, C))
    model(tokens, lengths=lengths)
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(tokens[:, ::-1].copy(), lengths=[9, 9, 9])
    model.backward(d)
    twin(tokens, lengths=lengths)
    twin.backward(d)
    for name, g in model.gradients().items():
        np.testing.assert_array_equal(g, twin.gradients()[name], err_msg=name)


def test_a_rejected_gradient_does_not_use_up_the_chains_call(rng):
    """A dy of the wrong shape is rejected by the last module, which keeps its call; the chain keeps its own entry
    too, so the corrected backward runs (before, it raised that every call already went through backward)."""
    model = classifier()
    twin = copy.deepcopy(model)
    tokens, lengths = batch(rng)
    d = rng.standard_normal((3, C))
    model(tokens, lengths=lengths)
    with pytest.raises(ValueError, match="dy must have shape"):
        model.backward(rng.standard_normal((3, C + 1)))
    model.backward(d)
    twin(tokens, lengths=lengths)
    twin.backward(d)
    for name, g in model.gradients().items():
        np.testing.assert_array_equal(g, twin.gradients()[name], err_msg=name)


class Delegating(rc.Module):
    """A custom module that records nothing itself: its Linear keeps the tape."""

    def __init__(self, features, dtype=np.float64):
        self.lin = rc.Linear(features, features, dtype=dtype, seed=4)

    def __call__(self, x):
        return self.lin(x)

    def backward(self, dy):
        return self.lin.backward(dy)


@pytest.mark.parametrize("first", ["delegating", "nested"])
def test_a_failed_call_leaves_nothing_recorded_below_the_chains_modules(first, rng):
    """The failed call's entries are dropped from every tape under the chain (a custom module's sub-module, a nested
    Sequential's modules), not only the chain's direct modules: before, the Linear inside kept the failed call's x
    and the next backward used it (silently wrong weight gradients)."""
    head = Delegating(E) if first == "delegating" else rc.Sequential(rc.Linear(E, E, dtype=np.float64, seed=5))
    model = rc.Sequential(head, rc.GRU(E, H, dtype=np.float64, seed=6), rc.LastHidden())
    twin = copy.deepcopy(model)
    x, d = rng.standard_normal((5, 3, E)), rng.standard_normal((3, H))
    model(x)
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(2 * x, lengths=[9, 9, 9])  # fails in the GRU, after the first module recorded
    model.backward(d)
    twin(x)
    twin.backward(d)
    for name, g in model.gradients().items():
        np.testing.assert_array_equal(g, twin.gradients()[name], err_msg=name)
    assert all(not module._tape for module in model.modules())


def test_lengths_reach_only_the_modules_that_take_it(rng):
    seen = []

    class Probe(rc.Module):
        def __call__(self, x):
            seen.append(x.shape)
            return x

        def backward(self, dy):
            return dy

    model = rc.Sequential(Probe(), rc.RNN(2, 3, seed=0), Probe())
    x = rng.standard_normal((4, 2, 2)).astype(np.float32)
    y = model(x, lengths=[4, 1])
    assert seen == [(4, 2, 2), (4, 2, 3)]
    assert not y[2:, 1].any()  # the RNN got the lengths: padded steps give 0
    with pytest.raises(ValueError, match="lengths must have shape"):
        model(x, lengths=[4, 1, 1])
    with pytest.raises(ValueError, match="none of its modules takes lengths"):
        rc.Sequential(Probe(), rc.Linear(2, 2))(x, lengths=[4, 1])
    # a nested chain takes lengths only when one of its modules does (it used to get them, and raise)
    nested = rc.Sequential(rc.Sequential(Probe()), rc.Sequential(rc.RNN(2, 3, seed=0), Probe()))
    np.testing.assert_array_equal(nested(x, lengths=[4, 1]), y)
    with pytest.raises(ValueError, match="none of its modules takes lengths"):
        rc.Sequential(rc.Sequential(Probe()), rc.Linear(2, 2))(x, lengths=[4, 1])


def gru_classifier(bidirectional):
    return rc.Sequential(
        rc.Embedding(V, E, padding_idx=0, dtype=np.float64, seed=1),
        rc.GRU(E, H, bidirectional=bidirectional, batch_first=True, dtype=np.float64, seed=2),
        rc.LastHidden(),
        rc.Linear((2 if bidirectional else 1) * H, C, dtype=np.float64, seed=3))


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional", "unidirectional"])
def test_left_padding_equals_the_right_padded_batch(bidirectional, nested, rng):
    """Keras' front-padded batch with padding="left" gives the right-padded batch's outputs and gradients (the chain
    used to take no padding=, so the layers read such data as right-padded)."""
    tokens, lengths = batch(rng)
    left = np.zeros_like(tokens)  # the same samples, padded at the front (Keras' pad_sequences default)
    for b, n in enumerate(lengths):
        left[b, tokens.shape[1] - n:] = tokens[b, :n]
    up = rng.standard_normal((len(lengths), C))
    results = []
    for data, padding in [(tokens, "right"), (left, "left")]:
        model = gru_classifier(bidirectional)
        if nested:  # a nested chain passes lengths and padding on
            model = rc.Sequential(model[0], rc.Sequential(model[1], model[2]), model[3])
        out = model(data, lengths=lengths, padding=padding)
        assert model.backward(up) is None
        results.append((out, model.gradients()))
    (out_right, grads_right), (out_left, grads_left) = results
    assert_close(out_left, out_right, "kernel_vs_reference", np.float64, "logits")
    assert grads_left.keys() == grads_right.keys()
    for name, g in grads_right.items():
        assert_close(grads_left[name], g, "kernel_vs_reference", np.float64, name)


def test_padding_reaches_only_the_modules_that_take_it(rng):
    class Probe(rc.Module):
        def __call__(self, x):
            return x

        def backward(self, dy):
            return dy

    class LengthsOnly(Probe):
        def __call__(self, x, lengths=None):
            return x

    x = rng.standard_normal((4, 2, 2)).astype(np.float32)
    rnn = rc.RNN(2, 3, seed=0)
    y = rc.Sequential(Probe(), rnn, Probe())(x[::-1].copy(), lengths=[4, 1], padding="left")
    assert not y[:3, 1].any() and y[3, 1].any()  # left padding: sample 1's one valid step is the last
    np.testing.assert_array_equal(rc.Sequential(rnn)(x, padding="right")[0], rnn(x)[0])  # the default, said aloud
    with pytest.raises(ValueError, match="padding must be one of 'right', 'left', got 'middle'"):
        rc.Sequential(rnn)(x, lengths=[4, 1], padding="middle")
    with pytest.raises(ValueError, match="Sequential got padding='left', but none of its modules takes padding"):
        rc.Sequential(Probe(), rc.Linear(2, 2))(x, padding="left")
    with pytest.raises(ValueError, match="Sequential got padding='left', but none of its modules takes padding"):
        rc.Sequential(rc.Sequential(Probe()), rc.Linear(2, 2))(x, padding="left")
    with pytest.raises(ValueError, match=r"padding='left', but module 0 \(LengthsOnly\) takes lengths and not "
                                         "padding"):
        rc.Sequential(LengthsOnly(), rnn)(x, lengths=[4, 1], padding="left")
    rc.Sequential(LengthsOnly(), rnn)(x, padding="left")  # no lengths: nothing is padded


def test_indexing_len_iteration_append_and_repr():
    a, b = rc.Linear(2, 3), rc.Linear(3, 1)
    model = rc.Sequential(a, b)
    assert len(model) == 2 and model[0] is a and model[-1] is b and list(model) == [a, b]
    assert [name for name, _ in model.named_children()] == ["0", "1"]
    assert list(model.parameters()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    tail = model[1:]
    assert isinstance(tail, rc.Sequential) and list(tail) == [b]
    with pytest.raises(IndexError, match="Sequential index 2 out of range for 2 modules"):
        model[2]
    assert model.append(rc.LastHidden()) is model and len(model) == 3
    assert repr(rc.Sequential(rc.LSTM(2, 3), rc.LastHidden())) == (
        "Sequential(\n  (0): LSTM(2, 3, dtype=float32)\n  (1): LastHidden()\n)")
    with pytest.raises(TypeError, match="add_module: 0 must be a module"):
        rc.Sequential(np.zeros(2))


def test_get_config_and_from_config():
    model = classifier(dtype=np.float32)
    config = model.get_config()
    assert [spec["class"] for spec in config["modules"]] == [
        f"{type(m).__module__}:{type(m).__qualname__}" for m in model]
    assert config["modules"][3]["config"] == model[3].get_config()
    classes = {f"{c.__module__}:{c.__qualname__}": c for c in (rc.Embedding, rc.LSTM, rc.LastHidden, rc.Linear)}

    def build(spec):
        return classes[spec["class"]](**spec["config"])

    again = rc.Sequential.from_config(config, build)
    assert repr(again) == repr(model)
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(again.parameters()[name], p)  # seeded: the same init
    with pytest.raises(ValueError, match="Sequential.from_config: config must be"):
        rc.Sequential.from_config({"modules": "x"}, build)

    class NoConfig(rc.Module):
        pass

    with pytest.raises(TypeError, match=r"module 1 \(NoConfig\) has no get_config"):
        rc.Sequential(rc.Linear(2, 2), NoConfig()).get_config()


def test_save_and_load_a_sequential(tmp_path, rng):
    model = classifier(dtype=np.float32)
    for p in model.parameters().values():
        p += 0.1
    rc.save(model, tmp_path / "model.npz")
    loaded = rc.load(tmp_path / "model.npz")
    tokens, lengths = batch(rng)
    np.testing.assert_array_equal(loaded.eval()(tokens, lengths=lengths), model.eval()(tokens, lengths=lengths))


def test_last_hidden_alone_and_its_errors(rng):
    lstm = rc.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    last = rc.LastHidden()
    x = rng.standard_normal((4, 2, 2))
    y, (h_n, c_n) = lstm(x)
    h = last((y, (h_n, c_n)))
    np.testing.assert_array_equal(h, np.concatenate([h_n[-2], h_n[-1]], 1))
    dy, (dh_n, dc_n) = last.backward(np.ones((2, 6)))
    assert dy is None and dc_n is None and not dh_n[:2].any() and (dh_n[2:] == 1).all()
    dx, _ = lstm.backward(dy, (dh_n, dc_n))
    assert dx.shape == x.shape
    gru_last = last(rc.GRU(2, 3, seed=0)(x.astype(np.float32)))
    assert gru_last.shape == (2, 3)
    _, dh = last.backward(np.ones((2, 3), np.float32))
    assert isinstance(dh, np.ndarray) and dh.shape == (1, 2, 3)  # a GRU's state is h alone
    with pytest.raises(TypeError, match=r"LastHidden takes a recurrent layer's whole output \(y, state\)"):
        last(y)
    last(lstm(x))
    with pytest.raises(ValueError, match=r"dh must have shape \[B, D\*H\]"):
        last.backward(np.ones((2, 3)))
    last.backward(np.ones((2, 6)))  # the rejected dh did not use up the call
