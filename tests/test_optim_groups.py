"""``rnncore.optim``: parameter groups, ``opt.zero_grad()``, frozen parameters (``model.trainable_parameters()``),
gradient clipping of trainable gradients only, and pickling an optimizer with its model in every state.

A group's update is checked against the same optimizer built over that group alone (so the torch parity of
tests/test_optim.py carries over); freezing against torch's rule (a parameter without a gradient gets no update and
no state). ``Stub`` stands in for a model with the module protocol's ``trainable_parameters()``.
"""

import copy
import pickle

import numpy as np
import pytest

import rnncore as rc
from rnncore import optim


class Stub:
    """A model with parameters ``w`` [3, 2] and ``b`` [2] whose ``trainable_parameters()`` leaves out the names in
    ``frozen`` (what the module protocol's ``requires_grad_(False)`` does)."""

    def __init__(self, seed=0, frozen=()):
        rng = np.random.default_rng(seed)
        self._params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
        self._grads = {n: np.zeros_like(p) for n, p in self._params.items()}
        self.frozen = set(frozen)

    def parameters(self):
        return dict(self._params)

    def gradients(self):
        return dict(self._grads)

    def trainable_parameters(self):
        return {n: p for n, p in self._params.items() if n not in self.frozen}

    def zero_grad(self):
        for g in self._grads.values():
            g[...] = 0.0

    def set_grads(self, rng):
        for g in self._grads.values():
            g[...] = rng.standard_normal(g.shape)


class Net(rc.Module):
    """An LSTM encoder and a Linear head on its last state: two sub-modules for two parameter groups."""

    def __init__(self):
        super().__init__()
        self.encoder = rc.LSTM(3, 4, seed=0, dtype=np.float64)
        self.head = rc.Linear(4, 2, seed=1, dtype=np.float64)

    def __call__(self, x):
        _, (h, _) = self.encoder(x)
        return self.head(h[0])

    def backward(self, dout):
        self.encoder.backward(None, (self.head.backward(dout)[None], None))


def train_step(model, opt, x):
    out = model(x)
    opt.zero_grad()
    model.backward(out - 1.0)  # d/dout of 0.5 * sum((out - 1)**2)
    opt.step()


def two_groups(net, **defaults):
    return optim.Adam([{"params": net.encoder, "lr": 0.05}, {"params": net.head, "betas": (0.5, 0.9)}],
                      **({"lr": 0.01} | defaults))


# -- groups -----------------------------------------------------------------------------------------------------------
def test_each_group_updates_as_its_own_optimizer(rng):
    x = rng.standard_normal((5, 2, 3))
    net, separate = Net(), Net()
    opt = two_groups(net)
    enc_opt = optim.Adam(separate.encoder, lr=0.05)
    head_opt = optim.Adam(separate.head, lr=0.01, betas=(0.5, 0.9))
    for _ in range(4):
        train_step(net, opt, x)
        out = separate(x)
        separate.zero_grad()
        separate.backward(out - 1.0)
        enc_opt.step()
        head_opt.step()
    for name, p in net.parameters().items():
        np.testing.assert_array_equal(p, separate.parameters()[name], err_msg=name)
    assert sorted(opt.state) == sorted([f"0.{n}" for n in net.encoder.parameters()]
                                       + [f"1.{n}" for n in net.head.parameters()])
    np.testing.assert_array_equal(opt.state["1.weight"]["exp_avg"], head_opt.state["weight"]["exp_avg"])


def test_param_groups_hold_hyperparameters_and_params():
    net = Net()
    opt = two_groups(net, eps=1e-6)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.01]
    assert [g["betas"] for g in opt.param_groups] == [(0.9, 0.999), (0.5, 0.9)]
    assert [g["eps"] for g in opt.param_groups] == [1e-6, 1e-6]
    assert opt.param_groups[1]["params"]["1.weight"] is net.head.parameters()["weight"]
    assert opt.parameters()["0.weight_ih_l0"] is net.encoder.parameters()["weight_ih_l0"]
    assert repr(opt).splitlines()[1].startswith("  param_groups[0] (4 parameters): lr=0.05, betas=(0.9, 0.999)")


def test_changing_a_group_lr_takes_effect(rng):
    a, b = Stub(0), Stub(1)
    opt = optim.SGD([{"params": a}, {"params": b}], lr=0.1)
    a.set_grads(rng)
    b.set_grads(rng)
    before = {n: p.copy() for n, p in b.parameters().items()}
    opt.param_groups[1]["lr"] = 0  # an int: validated and normalized at the step
    opt.step()
    assert opt.param_groups[1]["lr"] == 0.0 and isinstance(opt.param_groups[1]["lr"], float)
    for n, p in b.parameters().items():
        np.testing.assert_array_equal(p, before[n])


def test_dict_groups_take_prefixed_grads():
    p0, p1 = {"w": np.ones(2)}, {"w": np.ones(3)}
    opt = optim.SGD([{"params": p0}, {"params": p1, "lr": 1.0}], lr=0.5)
    opt.step({"0.w": np.ones(2), "1.w": np.ones(3)})
    np.testing.assert_array_equal(p0["w"], [0.5, 0.5])
    np.testing.assert_array_equal(p1["w"], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"missing \['1.w'\], unexpected \['w'\]"):
        opt.step({"0.w": np.ones(2), "w": np.ones(3)})
    with pytest.raises(TypeError, match="needs grads"):
        opt.step()


def test_single_group_attributes():
    opt = optim.Adam(Stub(), lr=0.1)
    opt.lr = 0.2
    opt.betas = (0.8, 0.9)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.lr == 0.2 and opt.hyperparameters["betas"] == (0.8, 0.9)
    with pytest.raises(AttributeError, match="no attribute 'momentum'"):
        opt.momentum  # noqa: B018  (not one of Adam's)
    two = optim.Adam([{"params": Stub(0)}, {"params": Stub(1)}], lr=0.1)
    with pytest.raises(AttributeError, match=r"2 parameter groups.*opt.param_groups\[i\]\['lr'\]"):
        two.lr  # noqa: B018
    with pytest.raises(AttributeError, match="param_groups"):
        two.lr = 0.5
    with pytest.raises(AttributeError, match="param_groups"):
        two.hyperparameters  # noqa: B018
    assert [g["lr"] for g in two.param_groups] == [0.1, 0.1]


def test_state_dict_carries_the_groups(rng):
    a, b = Stub(0), Stub(1)
    opt = optim.RMSprop([{"params": a, "lr": 0.1}, {"params": b, "momentum": 0.5}], lr=0.01)
    a.set_grads(rng)
    b.set_grads(rng)
    opt.step()
    state = opt.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [["0.w", "0.b"], ["1.w", "1.b"]]
    assert [(g["lr"], g["momentum"]) for g in state["param_groups"]] == [(0.1, 0.0), (0.01, 0.5)]
    a2, b2 = copy.deepcopy(a), copy.deepcopy(b)
    resumed = optim.RMSprop([{"params": a2}, {"params": b2}], lr=0.3)
    resumed.load_state_dict(state)
    assert [(g["lr"], g["momentum"]) for g in resumed.param_groups] == [(0.1, 0.0), (0.01, 0.5)]
    a.set_grads(rng)
    b.set_grads(rng)
    a2._grads = copy.deepcopy(a._grads)
    b2._grads = copy.deepcopy(b._grads)
    opt.step()
    resumed.step()
    for x, y in ((a, a2), (b, b2)):
        for n, p in x.parameters().items():
            np.testing.assert_array_equal(p, y.parameters()[n])

    single = optim.RMSprop(Stub(2), lr=0.1)
    with pytest.raises(ValueError, match="'param_groups' must be a list of 1 groups"):
        single.load_state_dict(state)
    renamed = copy.deepcopy(state)
    renamed["param_groups"][1]["params"] = ["1.b", "1.w"]
    with pytest.raises(ValueError, match=r"param_groups\[1\] holds the parameters \['1.b', '1.w'\]"):
        resumed.load_state_dict(renamed)
    extra = copy.deepcopy(state)
    extra["param_groups"][0]["lrr"] = 0.1
    with pytest.raises(KeyError, match=r"param_groups\[0\]: missing \[\], unexpected \['lrr'\]"):
        resumed.load_state_dict(extra)


# -- errors in building and changing groups -------------------------------------------------------------------------
def test_bad_groups_raise():
    with pytest.raises(ValueError, match="empty list of parameter groups"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\] must be a parameter group"):
        optim.SGD([{"params": Stub()}, Stub()], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must be a parameter group"):
        optim.SGD([{"lr": 0.1}], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[0\] has unknown keys \['momentun'\]"):
        optim.SGD([{"params": Stub(), "momentun": 0.9}], lr=0.1)
    with pytest.raises(ValueError, match="Invalid lr"):
        optim.SGD([{"params": Stub()}, {"params": Stub(1), "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([{"params": Stub(), "nesterov": True}], lr=0.1, momentum=0.9, dampening=0.1)
    shared = Stub()
    with pytest.raises(ValueError, match="may appear in only one parameter group"):
        optim.SGD([{"params": shared}, {"params": {"again": shared.parameters()["w"]}}], lr=0.1)


def test_group_changes_are_validated_at_step(rng):
    a, b = Stub(0), Stub(1)
    opt = optim.SGD([{"params": a}, {"params": b}], lr=0.1)
    a.set_grads(rng)
    b.set_grads(rng)
    before = {n: p.copy() for n, p in opt.parameters().items()}

    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid lr"):
        opt.step()
    opt.param_groups[1]["lr"] = 0.1
    del opt.param_groups[0]["momentum"]
    with pytest.raises(KeyError, match=r"param_groups\[0\]: missing \['momentum'\]"):
        opt.step()
    opt.param_groups[0]["momentum"] = 0.0
    opt.param_groups[0]["lR"] = 0.5
    with pytest.raises(KeyError, match=r"unexpected \['lR'\]"):
        opt.step()
    del opt.param_groups[0]["lR"]
    params = opt.param_groups[0]["params"]
    opt.param_groups[0]["params"] = dict(params)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\] was replaced"):
        opt.step()
    opt.param_groups[0]["params"] = params
    opt.param_groups.append(dict(opt.param_groups[0]))
    with pytest.raises(ValueError, match="param_groups has 3 groups, the optimizer was built with 2"):
        opt.step()
    opt.param_groups.pop()
    for n, p in opt.parameters().items():  # nothing moved
        np.testing.assert_array_equal(p, before[n])
    opt.step()


# -- zero_grad --------------------------------------------------------------------------------------------------------
def test_zero_grad_zeroes_the_models(rng):
    a, b = Stub(0), Stub(1)
    opt = optim.SGD([{"params": a}, {"params": b}], lr=0.1)
    a.set_grads(rng)
    b.set_grads(rng)
    opt.zero_grad()
    for g in (*a.gradients().values(), *b.gradients().values()):
        np.testing.assert_array_equal(g, 0.0)
    net = Net()
    for g in net.gradients().values():
        g[...] = 1.0
    optim.Adam(net).zero_grad()  # model form: the model's own zero_grad()
    for g in net.gradients().values():
        np.testing.assert_array_equal(g, 0.0)


def test_zero_grad_without_a_model_raises(rng):
    with pytest.raises(TypeError, match="built from a dict of parameters: the gradients are yours"):
        optim.SGD({"w": np.zeros(2)}, lr=0.1).zero_grad()
    a = Stub()
    a.set_grads(rng)
    mixed = optim.SGD([{"params": a}, {"params": {"w": np.zeros(2)}}], lr=0.1)
    with pytest.raises(TypeError, match="zero_grad"):
        mixed.zero_grad()
    assert np.any(a.gradients()["w"] != 0)  # nothing zeroed


def test_zero_grad_then_backward_matches_model_zero_grad(rng):
    x = rng.standard_normal((5, 2, 3))
    net, ref = Net(), Net()
    opt, ref_opt = two_groups(net), two_groups(ref)
    for _ in range(3):
        train_step(net, opt, x)
        out = ref(x)
        ref.zero_grad()
        ref.backward(out - 1.0)
        ref_opt.step()
    for name, p in net.parameters().items():
        np.testing.assert_array_equal(p, ref.parameters()[name])


# -- frozen parameters ------------------------------------------------------------------------------------------------
def test_frozen_parameters_get_no_update_and_no_state(rng):
    model = Stub(frozen={"w"})
    only_b = {"b": model.parameters()["b"].copy()}
    opt = optim.Adam(model, lr=0.1)
    ref = optim.Adam(only_b, lr=0.1)  # torch's rule: a parameter without a gradient is skipped
    w0 = model.parameters()["w"].copy()
    for _ in range(3):
        model.set_grads(rng)
        opt.step()
        ref.step({"b": model.gradients()["b"]})
    np.testing.assert_array_equal(model.parameters()["w"], w0)
    np.testing.assert_array_equal(model.parameters()["b"], only_b["b"])
    assert opt.state["w"] == {} and set(opt.state["b"]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt.state_dict()["state"]["w"] == {}


def test_freezing_after_building_the_optimizer(rng):
    model = Stub()
    opt = optim.SGD(model, lr=0.1, momentum=0.9)
    model.set_grads(rng)
    opt.step()
    model.frozen = {"b"}
    b = model.parameters()["b"].copy()
    buffer = opt.state["b"]["momentum_buffer"].copy()
    model.set_grads(rng)
    opt.step()
    np.testing.assert_array_equal(model.parameters()["b"], b)
    np.testing.assert_array_equal(opt.state["b"]["momentum_buffer"], buffer)  # kept, as torch keeps it
    model.frozen = set()
    opt.step()
    assert np.all(model.parameters()["b"] != b)


def test_frozen_parameters_in_groups_and_explicit_grads(rng):
    a, b = Stub(0, frozen={"b"}), Stub(1)
    opt = optim.SGD([{"params": a}, {"params": b}], lr=1.0)
    ab = a.parameters()["b"].copy()
    grads = {"0.w": np.ones((3, 2)), "1.w": np.ones((3, 2)), "1.b": np.ones(2)}  # the frozen 0.b may be left out
    opt.step(grads)
    np.testing.assert_array_equal(a.parameters()["b"], ab)
    opt.step({**grads, "0.b": np.ones(2)})  # or given: not read
    np.testing.assert_array_equal(a.parameters()["b"], ab)
    with pytest.raises(ValueError, match=r"missing \['0.w'\]"):
        opt.step({"1.w": np.ones((3, 2)), "1.b": np.ones(2)})


def test_model_without_trainable_parameters_updates_everything(rng):
    class Plain:
        def __init__(self):
            self.p, self.g = {"w": np.zeros(2)}, {"w": np.ones(2)}

        def parameters(self):
            return self.p

        def gradients(self):
            return self.g

    model = Plain()
    optim.SGD(model, lr=1.0).step()
    np.testing.assert_array_equal(model.p["w"], [-1.0, -1.0])


def test_trainable_parameters_must_be_the_optimizers():
    model = Stub()
    opt = optim.SGD(model, lr=0.1)
    model._params["new"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"trainable_parameters\(\) \(param_groups\[0\]\) holds \['new'\]"):
        opt.step()



def test_a_replaced_submodule_is_not_the_optimizers():
    """A sub-module replaced after the optimizer was built has the same names but new arrays: stepping used to apply
    the new module's gradients to the old module's arrays (the new one never trained); now it raises."""
    class Model(rc.Module):
        def __init__(self):
            self.head = rc.Linear(2, 2, seed=0)

    model = Model()
    opt = optim.SGD(model, lr=0.1)
    old = model.head
    model.head = rc.Linear(2, 2, seed=1)
    model.head.gradients()["weight"][...] = 1.0
    before = old.weight.copy()
    with pytest.raises(ValueError, match=r"trainable_parameters\(\) \(param_groups\[0\]\) holds "
                                         r"\['head.bias', 'head.weight'\], which the optimizer was not built over"):
        opt.step()
    np.testing.assert_array_equal(old.weight, before)

def test_steps_follow_freezing_and_replacement_after_earlier_steps():
    """The optimizer reuses its last step's names and gradients while the model keeps its shape; freezing,
    unfreezing and replacing a sub-module between steps are each seen at the next step."""
    class Model(rc.Module):
        def __init__(self):
            self.body = rc.Linear(2, 2, seed=0)
            self.head = rc.Linear(2, 2, seed=1)

    model = Model()
    opt = optim.SGD(model, lr=0.1)
    for _ in range(2):
        model.gradients()["body.weight"][...] = 1.0
        opt.step()
    model.body.requires_grad_(False)
    before = model.body.weight.copy()
    opt.step()
    np.testing.assert_array_equal(model.body.weight, before)
    model.body.requires_grad_(True)
    opt.step()
    np.testing.assert_allclose(model.body.weight, before - 0.1)
    model._params["late"], model._grads["late"] = np.zeros(1), np.zeros(1)  # around register_parameter
    with pytest.raises(ValueError, match=r"holds \['late'\], which the optimizer was not built over"):
        opt.step()
    del model._params["late"], model._grads["late"]
    opt.step()
    model.head = rc.Linear(2, 2, seed=2)
    with pytest.raises(ValueError, match=r"holds \['head.bias', 'head.weight'\], which the optimizer was not "):
        opt.step()


# -- clipping trainable gradients only --------------------------------------------------------------------------------
def test_clipping_a_model_clips_only_trainable_gradients():
    model = Stub(frozen={"w"})
    model._grads["w"][...] = 100.0
    model._grads["b"][...] = [3.0, 4.0]
    total = rc.clip_grad_norm(model, max_norm=1.0)
    assert total == pytest.approx(5.0)  # w's gradient is not counted
    np.testing.assert_allclose(model.gradients()["b"], [0.6, 0.8], rtol=1e-5)
    np.testing.assert_array_equal(model.gradients()["w"], 100.0)  # nor changed
    rc.clip_grad_value(model, 0.5)
    np.testing.assert_array_equal(model.gradients()["w"], 100.0)
    np.testing.assert_allclose(model.gradients()["b"], [0.5, 0.5])
    model.frozen = set()
    rc.clip_grad_value(model, 0.5)
    np.testing.assert_array_equal(model.gradients()["w"], 0.5)


# -- pickling ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["fresh", "trained", "pending_forward"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_optimizer_with_its_model_copies_in_every_state(state, how, rng):
    x = rng.standard_normal((5, 2, 3))
    net = Net()
    opt = two_groups(net)
    if state != "fresh":
        train_step(net, opt, x)
    if state == "pending_forward":
        net(x)  # a training-mode forward whose workspaces the copy drops
    copied = pickle.loads(pickle.dumps(opt)) if how == "pickle" else copy.deepcopy(opt)
    copy_net = Net()
    copy_net.encoder, copy_net.head = copied._models  # the copied model, around the copied layers
    for name, p in copy_net.parameters().items():
        group = 0 if name.startswith("encoder.") else 1
        key = f"{group}.{name.split('.', 1)[1]}"
        assert copied.parameters()[key] is p  # the copy updates the copied model's arrays
        np.testing.assert_array_equal(p, net.parameters()[name])
        assert p is not net.parameters()[name]
    assert repr(copied) == repr(opt)
    for _ in range(2):
        train_step(net, opt, x)
        train_step(copy_net, copied, x)
    for name, p in net.parameters().items():
        np.testing.assert_array_equal(copy_net.parameters()[name], p, err_msg=name)
