"""The public module protocol (rnncore.Module, issue 12): register_parameter, attribute access, the named_* iterators,
zero_grad, train/eval, freezing, state dicts with strict=, repr, the tape's errors and leak warning, pickling."""

import copy
import pickle
import warnings

import numpy as np
import pytest

import rnncore as rc
from rnncore.module import TAPE_WARNING_LENGTH, IncompatibleKeys


class Scale(rc.Module):
    """y = x * w (elementwise, w [F]): the smallest custom module, calling super().__init__()."""

    def __init__(self, features=3):
        super().__init__()
        self.register_parameter("w", np.arange(1.0, features + 1.0))

    def get_config(self):
        return {"features": self.w.shape[0]}

    def __call__(self, x):
        self.save_for_backward(x)
        return x * self.w

    def backward(self, dy):
        x = self.saved_for_backward()
        self.gradients()["w"] += (dy * x).sum(axis=0)
        return dy * self.w


class NoSuperInit(rc.Module):
    """A model that never calls super().__init__() (as the README's Tagger): the bookkeeping starts on first use."""

    def __init__(self):
        self.first = Scale()
        self.layers = [rc.Linear(3, 2, seed=0), rc.Linear(2, 2, bias=False, seed=1)]

    def __call__(self, x):
        return self.layers[1](self.layers[0](self.first(x)))

    def backward(self, dy):
        return self.first.backward(self.layers[0].backward(self.layers[1].backward(dy)))


def test_register_parameter_uses_the_array_itself():
    m = Scale()
    assert m.w is m.parameters()["w"] is m._params["w"]
    assert m.gradients()["w"].shape == (3,) and not m.gradients()["w"].any()
    a = np.zeros((2, 2), np.float32)
    m.register_parameter("v", a)
    assert m.v is a and m.gradients()["v"].dtype == np.float32
    assert list(m.parameters()) == ["w", "v"]  # registration order
    replacement = np.ones(3)
    m.register_parameter("w", replacement)  # re-registering replaces
    assert m.w is replacement


@pytest.mark.parametrize("name, array, error, message", [
    ("w2", [1.0, 2.0], TypeError, "w2 must be a numpy.ndarray"),
    ("w2", np.zeros(3, np.int64), TypeError, "w2 must have dtype float32 or float64, got int64"),
    ("w2", np.zeros((3, 4))[:, ::2], ValueError, "w2 must be a C-contiguous array"),
    ("w2", np.broadcast_to(np.zeros(3), (2, 3)), ValueError, "w2 must be a (C-contiguous|writeable) array"),
    ("a.b", np.zeros(3), ValueError, "without '.'"),
    ("", np.zeros(3), ValueError, "non-empty"),
    (3, np.zeros(3), TypeError, "name must be a str, got int"),
    ("training", np.zeros(3), ValueError, "already has an attribute 'training'"),
    ("first", np.zeros(3), ValueError, "already has an attribute 'first'"),
])
def test_register_parameter_rejects_what_cannot_be_a_parameter(name, array, error, message):
    m = NoSuperInit()
    with pytest.raises(error, match=message):
        m.register_parameter(name, array)
    assert "w2" not in m.parameters()


def test_readonly_array_is_rejected():
    a = np.zeros(3)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="must be a writeable array"):
        Scale().register_parameter("v", a)


def test_assigning_to_a_parameter_raises_instead_of_shadowing_it():
    lin = rc.Linear(3, 2, seed=0)
    weight = lin.weight
    with pytest.raises(TypeError, match=r"Linear.weight is a parameter: assign in place, weight\[\.\.\.\] = value"):
        lin.weight = np.zeros((2, 3), np.float32)
    assert lin.weight is weight and lin.parameters()["weight"] is weight
    lin.weight[...] = 0.5  # in place works
    assert (lin.parameters()["weight"] == 0.5).all()
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'wieght'"):
        lin.wieght  # noqa: B018
    assert "weight" in dir(lin)


def test_linear_bias_is_the_bias_array_or_none():
    lin = rc.Linear(3, 2, seed=0)
    assert lin.bias is lin.parameters()["bias"] and lin.bias.shape == (2,)
    no_bias = rc.Linear(3, 2, bias=False)
    assert no_bias.bias is None and "bias" not in no_bias.parameters()
    assert no_bias.get_config()["bias"] is False and lin.get_config()["bias"] is True
    assert repr(no_bias) == "Linear(in_features=3, out_features=2, bias=False, dtype=float32)"


def test_a_model_without_super_init_works_and_names_nest_in_assignment_order():
    m = NoSuperInit()
    assert list(m.parameters()) == ["first.w", "layers.0.weight", "layers.0.bias", "layers.1.weight"]
    assert [name for name, _ in m.named_parameters(prefix="model.")][0] == "model.first.w"
    assert [name for name, _ in m.named_parameters(prefix="model")][0] == "model.first.w"  # torch's join
    assert [name for name, _ in m.named_modules(prefix="model")][1] == "model.first"
    assert [name for name, _ in m.named_children()] == ["first", "layers.0", "layers.1"]
    assert list(m.children()) == [m.first, *m.layers]
    assert list(m.modules()) == [m, m.first, *m.layers]
    assert [name for name, _ in m.named_modules()] == ["", "first", "layers.0", "layers.1"]
    assert m.gradients().keys() == m.parameters().keys()
    x = np.ones((4, 3))
    m.layers = [rc.Linear(3, 2, dtype=np.float64, seed=0), rc.Linear(2, 2, bias=False, dtype=np.float64, seed=1)]
    y = m(x)
    m.backward(np.ones_like(y))
    assert m.gradients()["first.w"].any()
    m.zero_grad()
    assert not any(g.any() for g in m.gradients().values())
    m.eval()
    assert not m.training and not m.first.training and not m.layers[1].training
    assert m.train() is m and m.layers[0].training


def test_a_shared_module_is_listed_once():
    class Tied(rc.Module):
        def __init__(self):
            self.a = rc.Linear(2, 2)
            self.b = self.a

    m = Tied()
    assert list(m.parameters()) == ["a.weight", "a.bias"]  # as torch: the first name
    assert list(m.gradients()) == ["a.weight", "a.bias"]
    assert list(m.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]  # as torch's state_dict
    assert list(m.modules()) == [m, m.a]


def test_requires_grad_freezes_recursively_and_trainable_parameters_skip_frozen():
    m = NoSuperInit()
    assert m.trainable_parameters().keys() == m.parameters().keys()
    assert m.layers[0].requires_grad_(False) is m.layers[0]
    assert list(m.trainable_parameters()) == ["first.w", "layers.1.weight"]
    assert m.trainable_parameters()["first.w"] is m.first.w
    m.requires_grad_(False)
    assert m.trainable_parameters() == {}
    m.requires_grad_()
    assert m.trainable_parameters().keys() == m.parameters().keys()

    class WithCell(rc.Module):
        def __init__(self):
            self.cell = rc.GRUCell(2, 2)

    model = WithCell()
    if not callable(getattr(model.cell, "requires_grad_", None)):  # cells join the protocol in another slice
        with pytest.raises(TypeError, match="GRUCell cannot be frozen"):
            model.requires_grad_(False)
    assert model.trainable_parameters().keys() == model.parameters().keys()


def test_load_state_dict_strict_and_not():
    a, b = NoSuperInit(), NoSuperInit()
    for p in a.parameters().values():
        p += 1.0
    state = a.state_dict()
    assert b.load_state_dict(state) == IncompatibleKeys([], [])
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(b.parameters()[name], p)
    partial = {"first.w": state["first.w"] * 2, "extra.weight": np.zeros(2)}
    with pytest.raises(KeyError, match=r"missing \['layers.0.bias', .*unexpected \['extra.weight'\]"):
        b.load_state_dict(partial)
    result = b.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["layers.0.bias", "layers.0.weight", "layers.1.weight"]
    assert result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(b.first.w, state["first.w"] * 2)
    with pytest.raises(ValueError, match=r"first.w must have shape \(3,\), got \(4,\)"):
        b.load_state_dict({"first.w": np.zeros(4)}, strict=False)  # shapes are checked even when not strict
    with pytest.raises(TypeError, match="strict must be a bool"):
        b.load_state_dict(state, strict="no")
    with pytest.raises(TypeError, match="state must be a mapping"):
        b.load_state_dict([("first.w", np.zeros(3))])
    layer = rc.LSTM(2, 3, seed=0)
    assert layer.load_state_dict(rc.LSTM(2, 3, seed=1).state_dict()).missing_keys == []


def test_repr_shows_a_leaf_modules_constructor_arguments_in_torch_layout():
    assert repr(Scale(4)) == "Scale(features=4)"

    class Model(rc.Module):
        def __init__(self, hidden=3):
            self.hidden = hidden
            self.scale = Scale(2)

        def get_config(self):
            return {"hidden": self.hidden}

    assert repr(Model()) == "Model(\n  hidden=3\n  (scale): Scale(features=2)\n)"


def test_add_module():
    m = rc.Module()
    m.add_module("0", rc.Linear(2, 2))
    assert list(m.parameters()) == ["0.weight", "0.bias"]
    with pytest.raises(TypeError, match="add_module: x must be a module"):
        m.add_module("x", np.zeros(2))
    with pytest.raises(ValueError, match="add_module: name must be"):
        m.add_module("a.b", rc.Linear(2, 2))


def test_the_empty_tape_error_says_what_happened():
    m = Scale()
    with pytest.raises(RuntimeError, match=r"Scale.backward needs a training-mode forward first: no training-mode "
                                           r"call was recorded"):
        m.backward(np.ones(3))
    x = np.ones((2, 3))
    m(x)
    m(x)
    m.backward(np.ones((2, 3)))
    m.backward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="all 2 recorded training-mode calls already went through backward"):
        m.backward(np.ones((2, 3)))
    m(x)
    m.eval()  # clears the tape, records nothing
    m(x)
    with pytest.raises(RuntimeError, match="no training-mode call was recorded .*eval mode"):
        m.backward(np.ones((2, 3)))


def test_a_tape_piling_up_without_backward_warns_once():
    m = Scale()
    x = np.ones((1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(TAPE_WARNING_LENGTH - 1):
            m(x)
    with pytest.warns(UserWarning, match=f"Scale holds {TAPE_WARNING_LENGTH} training-mode calls without "
                                         "backward.*eval()"):
        m(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(x)  # once
    m.eval()
    assert len(m._tape) == 0


def test_pickle_and_deepcopy_keep_parameters_and_drop_the_tape():
    m = NoSuperInit()
    x = np.ones((2, 3))
    m.layers = [rc.Linear(3, 2, dtype=np.float64, seed=0), rc.Linear(2, 2, bias=False, dtype=np.float64, seed=1)]
    y = m(x)
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin.parameters().keys() == m.parameters().keys()
        np.testing.assert_array_equal(twin.layers[0].weight, m.layers[0].weight)
        with pytest.raises(TypeError, match="is a parameter"):
            twin.layers[0].weight = None
        with pytest.raises(RuntimeError, match="no training-mode call was recorded"):
            twin.layers[1].backward(np.ones_like(y))
        np.testing.assert_array_equal(twin(x), y)
    m.backward(np.ones_like(y))  # the original's tape is untouched


def test_a_parameter_tied_across_modules_gets_every_modules_gradient():
    # Tying by registering another module's array (what the error for `out.weight = ...` suggests): the one array
    # has one gradient buffer, which both modules' backwards accumulate into (torch's one .grad), so gradients()
    # and the optimizer see the sum (with a buffer per module they saw only the first module's part).
    class TiedLM(rc.Module):
        def __init__(self):
            self.emb = rc.Embedding(5, 3, dtype=np.float64, seed=0)
            self.out = rc.Linear(3, 5, bias=False, dtype=np.float64, seed=1)
            self.out.register_parameter("weight", self.emb.weight)

    m = TiedLM()
    w = m.emb.weight
    assert m.out.weight is w and list(m.parameters()) == ["emb.weight"]
    idx = np.array([1, 4, 1])
    dy = np.random.default_rng(0).standard_normal((3, 5))
    h = m.emb(idx)
    m.out(h)
    m.emb.backward(m.out.backward(dy))
    expected = dy.T @ h  # the output projection's part
    np.add.at(expected, idx, dy @ w)  # the embedding's part
    np.testing.assert_allclose(m.gradients()["emb.weight"], expected, rtol=1e-12)
    assert m.out.gradients()["weight"] is m.emb.gradients()["weight"]
    before = w.copy()
    rc.optim.SGD(m, lr=1.0).step()
    np.testing.assert_allclose(w, before - expected, rtol=1e-12)
    m2 = copy.deepcopy(m)
    assert m2.out.gradients()["weight"] is m2.emb.gradients()["weight"]


def test_a_tied_parameter_is_frozen_when_a_module_holding_it_is():
    """trainable_parameters() uses parameters()' names (the first holder's) and leaves out a parameter any of whose
    modules is frozen (torch's one requires_grad per parameter: emb.requires_grad_(False) freezes the tied weight);
    before, it listed it under the other holder's name, and the optimizer refused to step."""
    class TiedLM(rc.Module):
        def __init__(self):
            self.emb = rc.Embedding(5, 3, seed=0)
            self.out = rc.Linear(3, 5, seed=1)
            self.out.register_parameter("weight", self.emb.weight)

    for frozen in ("emb", "out"):
        m = TiedLM()
        getattr(m, frozen).requires_grad_(False)
        expected = ["emb.weight", "out.bias"] if frozen == "emb" else []
        assert list(m.trainable_parameters()) == [name for name in expected if name != "emb.weight"]
        for g in m.gradients().values():
            g[...] = 1.0
        before = {name: p.copy() for name, p in m.parameters().items()}
        rc.optim.SGD(m, lr=0.1).step()
        np.testing.assert_array_equal(m.emb.weight, before["emb.weight"])  # frozen through either holder
        assert (m.out.bias != before["out.bias"]).all() == (frozen == "emb")


def test_assigning_an_array_to_an_absent_parameter_raises_instead_of_being_ignored():
    """Linear(bias=False).bias = array used to set a plain attribute the forward never read (silently no bias)."""
    lin = rc.Linear(3, 2, bias=False, seed=0)
    with pytest.raises(TypeError, match=r"Linear.bias is a parameter declared absent \(None\): call "
                                        r"register_parameter\('bias', array\)"):
        lin.bias = np.ones(2, np.float32)
    assert lin.bias is None and list(lin.parameters()) == ["weight"]
    lin.bias = None  # (it is None already)
    lin.register_parameter("bias", np.ones(2, np.float32))
    np.testing.assert_array_equal(lin(np.zeros((1, 3), np.float32)), [[1.0, 1.0]])


def test_tying_a_parameter_of_a_copy_shares_its_gradient_buffer():
    for copied in (copy.deepcopy(rc.Linear(3, 2, seed=0)), pickle.loads(pickle.dumps(rc.Linear(3, 2, seed=0)))):
        other = rc.Linear(3, 2, bias=False, seed=1)
        other.register_parameter("weight", copied.weight)
        assert other.gradients()["weight"] is copied.gradients()["weight"]


def test_train_and_requires_grad_take_bools_only():
    """train("no") and requires_grad_("no") used to mean True (bool("no")): the opposite of what was asked."""
    m = NoSuperInit()
    with pytest.raises(TypeError, match="train: mode must be a bool, got 'no'"):
        m.train("no")
    with pytest.raises(TypeError, match="requires_grad_: requires_grad must be a bool, got 0"):
        m.requires_grad_(0)
    assert m.training and m.trainable_parameters().keys() == m.parameters().keys()  # nothing changed
    assert not m.train(np.bool_(False)).training and not m.first.training


def test_a_submodule_under_a_private_name_is_still_a_submodule():
    """torch registers self._encoder like any sub-module; it used to be skipped, so its parameters were never
    trained, zeroed, saved or loaded (silently)."""
    class Private(rc.Module):
        def __init__(self):
            self._encoder = rc.Linear(2, 2, seed=0)
            self._heads = [rc.Linear(2, 1, seed=1)]

    m = Private()
    assert list(m.parameters()) == ["_encoder.weight", "_encoder.bias", "_heads.0.weight", "_heads.0.bias"]
    assert list(m.state_dict()) == list(m.parameters())
    m._encoder.gradients()["weight"][...] = 1.0
    m.zero_grad()
    assert not m._encoder.gradients()["weight"].any()
    assert not m.eval()._encoder.training
