"""rnncore.serialization: training state beside the model, nested modules, and loads an untrusted file cannot abuse
(no allocation from its config, no compressed or lying members). The basic save/load tests are in test_module.py."""

import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import rnncore as rc
from rnncore import optim
from rnncore.serialization import _FORMAT, _FORMAT_1, _checksum


class Tagger(rc.Module):
    """A test model: an LSTM over the sequence and a Linear head on every step."""

    def __init__(self, input_size=3, hidden_size=5, classes=4):
        self.config = dict(input_size=input_size, hidden_size=hidden_size, classes=classes)
        self.rnn = rc.LSTM(input_size, hidden_size, dtype=np.float64, seed=0)
        self.head = rc.Linear(hidden_size, classes, dtype=np.float64, seed=1)

    def get_config(self):
        return dict(self.config)

    def __call__(self, x):
        y, _ = self.rnn(x)
        return self.head(y)

    def backward(self, dlogits):
        self.rnn.backward(self.head.backward(dlogits))


def _name(cls):
    return f"{cls.__module__}:{cls.__qualname__}"  # what save records (rnncore's own classes build from it)


LSTM_NAME, EMBEDDING_NAME, LINEAR_NAME = _name(rc.LSTM), _name(rc.Embedding), _name(rc.Linear)


def _spec(module):
    return {"class": _name(type(module)), "config": module.get_config()}


class Stack(rc.Module):
    """A container of modules, saved as nested specs and rebuilt by ``from_config(config, build)``."""

    def __init__(self, layers):
        self.layers = list(layers)

    def get_config(self):
        return {"layers": [_spec(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config, build):
        return cls([build(spec) for spec in config["layers"]])


class Affine(rc.Module):
    """A custom module inside the container."""

    def __init__(self, size):
        self.size = size
        self.lin = rc.Linear(size, size, seed=3)

    def get_config(self):
        return {"size": self.size}


class Schedule:
    """Stands in for an lr schedule: a JSON-able state_dict (plus a tuple and a NumPy scalar, which must survive)."""

    def __init__(self):
        self.state = {"last_epoch": 0, "base_lrs": [0.1], "milestones": (2, 5), "best": np.float32(0.5)}

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, state):
        self.state = dict(state)


def _write(path, meta, arrays, fmt=_FORMAT):
    """An rnncore save written by hand, with a valid checksum (anyone can write one)."""
    header = json.dumps({"format": fmt, **meta}, sort_keys=True)
    record = dict(arrays)
    summed = record if fmt == _FORMAT else {k[len("param/"):]: v for k, v in record.items()}
    np.savez(path, header=np.array(header), checksum=np.array(_checksum(header, summed)), **record)


# ---- training state ------------------------------------------------------------------------------------------------

def _train(model, opt, steps, rng_seed):
    rng = np.random.default_rng(rng_seed)
    for _ in range(steps):
        x = rng.standard_normal((6, 2, 3))
        targets = rng.integers(0, 4, size=(6, 2))
        model.zero_grad()
        _, dlogits = rc.losses.softmax_cross_entropy(model(x), targets)
        model.backward(dlogits)
        opt.step()


@pytest.mark.parametrize("make_opt", [lambda m: optim.Adam(m, lr=0.01, amsgrad=True),
                                      lambda m: optim.SGD(m, lr=0.1, momentum=0.9, nesterov=True),
                                      lambda m: optim.RMSprop(m, lr=0.01, centered=True, momentum=0.5)])
def test_resume_is_bit_for_bit_six_uninterrupted_steps(tmp_path, make_opt):
    straight = Tagger()
    opt = make_opt(straight)
    _train(straight, opt, 3, 1)
    _train(straight, opt, 3, 2)

    first = Tagger()
    opt = make_opt(first)
    _train(first, opt, 3, 1)
    path = tmp_path / "ckpt.npz"
    rc.save(first, path, optimizer=opt)
    resumed = rc.load(path, cls=Tagger)
    opt = make_opt(resumed)
    rc.load_training_state(path, opt)
    _train(resumed, opt, 3, 2)
    for name, p in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], p, err_msg=name)


def test_training_state_layout_and_round_trip(tmp_path):
    model = Tagger()
    opt = optim.Adam(model, lr=0.01, betas=(0.8, 0.9))
    _train(model, opt, 1, 0)
    sched = Schedule()
    sched.state["last_epoch"] = 3
    path = tmp_path / "ckpt.npz"
    rc.save(model, path, optimizer=opt, scheduler=sched)
    with np.load(path) as f:
        names = set(f.files)
    assert "optim/state/rnn.weight_ih_l0/exp_avg" in names and "optim/state/head.bias/step" in names
    assert "sched/best" in names and "param/head.weight" in names
    opt2, sched2 = optim.Adam(Tagger(), lr=1.0), Schedule()
    rc.load_training_state(path, opt2, scheduler=sched2)
    assert opt2.hyperparameters == opt.hyperparameters and opt2.betas == (0.8, 0.9)
    assert sched2.state == sched.state and type(sched2.state["milestones"]) is tuple
    assert type(sched2.state["best"]) is np.float32
    want = opt.state_dict()["state"]
    for name, entries in opt2.state_dict()["state"].items():
        for key, a in entries.items():
            np.testing.assert_array_equal(a, want[name][key], err_msg=f"{name}/{key}")


def test_a_richer_state_dict_is_walked_generically(tmp_path):
    """Whatever nests in a state_dict (param groups, lists, tuples, None, a dict shaped like a tag) comes back."""

    class Rich(Schedule):
        def __init__(self):
            self.state = {"param_groups": [{"lr": 0.1, "params": ["a", "b"], "betas": (0.9, 0.99)}],
                          "state": {"a": {"step": np.array(3.0), "buf": np.arange(6.0).reshape(2, 3)}},
                          "odd": {"__tuple__": [1]}, "none": None, "inf": float("inf")}

    rich = Rich()
    path = tmp_path / "rich.npz"
    rc.save(rc.Linear(2, 2), path, scheduler=rich)
    back = Schedule()
    rc.load_training_state(path, scheduler=back)
    assert back.state["param_groups"] == rich.state["param_groups"]
    assert back.state["odd"] == {"__tuple__": [1]} and back.state["none"] is None and back.state["inf"] == np.inf
    np.testing.assert_array_equal(back.state["state"]["a"]["buf"], rich.state["state"]["a"]["buf"])
    assert back.state["state"]["a"]["step"].shape == ()


def test_training_state_errors(tmp_path):
    path = tmp_path / "model.npz"
    model = Tagger()
    rc.save(model, path)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        rc.load_training_state(path, optim.Adam(model))
    with pytest.raises(TypeError, match=r"optimizer must have state_dict\(\) and load_state_dict\(\)"):
        rc.save(model, path, optimizer=object())
    with pytest.raises(TypeError, match="scheduler must have state_dict"):
        rc.load_training_state(path, scheduler=3)
    with pytest.raises(TypeError, match="neither an array nor JSON"):
        bad = Schedule()
        bad.state["x"] = {1, 2}
        rc.save(model, path, scheduler=bad)
    opt = optim.Adam(model)
    _train(model, opt, 1, 0)
    rc.save(model, path, optimizer=opt)
    with pytest.raises(ValueError, match="does not fit this SGD"):
        rc.load_training_state(path, optim.SGD(model, lr=0.1))
    with pytest.raises(ValueError, match="does not fit this Adam"):
        rc.load_training_state(path, optim.Adam(rc.Linear(2, 2)))
    # the optimizer state is covered by the checksum
    with np.load(path) as f:
        record = {k: f[k] for k in f.files}
    record["optim/state/head.bias/exp_avg"] = record["optim/state/head.bias/exp_avg"] + 1
    np.savez(tmp_path / "altered.npz", **record)
    with pytest.raises(ValueError, match="checksum"):
        rc.load_training_state(tmp_path / "altered.npz", optim.Adam(model))


# ---- nested modules ------------------------------------------------------------------------------------------------

def test_a_container_of_custom_modules_loads_with_a_list_of_classes(tmp_path):
    model = Stack([rc.GRU(4, 4, seed=0), Affine(4), Stack([Affine(4)])])
    for p in model.parameters().values():
        p += 0.5
    path = tmp_path / "stack.npz"
    rc.save(model, path)
    loaded = rc.load(path, cls=[Stack, Affine])
    assert [type(m) for m in loaded.layers] == [rc.GRU, Affine, Stack] and type(loaded.layers[2].layers[0]) is Affine
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], p, err_msg=name)
    assert type(rc.load(path, cls=(Affine, Stack))) is Stack
    with pytest.raises(ValueError, match=r"holds a .*Affine, not a .*Stack \(cls\)"):
        rc.load(path, cls=Stack)  # the nested class must be named too
    with pytest.raises(TypeError, match="cls must be a class or a list/tuple of classes"):
        rc.load(path, cls=[Stack, "Affine"])


def test_a_malformed_nested_spec_names_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    _write(path, {"class": f"{Stack.__module__}:Stack", "config": {"layers": ["subprocess:run"]}}, {})
    with pytest.raises(ValueError, match=r"bad\.npz: a module spec must be"):
        rc.load(path, cls=Stack)
    _write(path, {"class": f"{Stack.__module__}:Stack",
                  "config": {"layers": [{"class": "os:system", "config": {"command": "true"}}]}}, {})
    with pytest.raises(ValueError, match="holds a os:system, not a"):
        rc.load(path, cls=Stack)


# ---- untrusted files -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("class_name,config", [
    (LSTM_NAME, {"input_size": 3, "hidden_size": 10**9}),
    (LSTM_NAME, {"input_size": 3, "hidden_size": 4, "num_layers": 10**6}),
    (EMBEDDING_NAME, {"num_embeddings": 10**12, "embedding_dim": 8}),
    (LINEAR_NAME, {"in_features": 10**5, "out_features": 10**5}),
])
def test_a_huge_config_beside_tiny_arrays_raises_without_allocating(tmp_path, class_name, config):
    path = tmp_path / "huge.npz"
    _write(path, {"class": class_name, "config": config}, {"param/weight": np.zeros((2, 2), np.float32)})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"huge\.npz: the saved config asks for parameters larger than"):
            rc.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"
    assert time.perf_counter() - start < 2.0


def test_the_budget_is_the_files_arrays(tmp_path):
    """A real save loads (its parameters are exactly the budget); the budget ends with the load."""
    big = rc.Embedding(3000, 32)
    path = tmp_path / "emb.npz"
    rc.save(big, path)
    assert rc.load(path).num_embeddings == 3000
    rc.Embedding(10**5, 8)  # outside a load: no budget


@pytest.mark.parametrize("config,message", [
    ({"input_size": 3, "hidden_size": "8"}, "hidden_size must be an int"),
    ({"input_size": 3, "hidden_size": [8]}, "hidden_size must be an int"),
    ({"input_size": 3, "hidden_size": 4.0}, "hidden_size must be an int"),
    ({"input_size": 3, "hidden_size": -1}, "hidden_size must be >= 1"),
    ({"input_size": 3, "hidden_size": 4, "shell": "rm -rf"}, "unexpected keyword argument 'shell'"),
    ({"input_size": 3}, "missing 1 required"),
    ({"input_size": 3, "hidden_size": 4, "dtype": "object"}, "dtype"),
])
def test_a_bad_config_is_a_value_error_naming_the_file(tmp_path, config, message):
    path = tmp_path / "bad_config.npz"
    _write(path, {"class": LSTM_NAME, "config": config}, {})
    with pytest.raises(ValueError, match=rf"bad_config\.npz: cannot build {LSTM_NAME} from the "
                                         rf"saved config: .*{message}"):
        rc.load(path)


def test_compressed_lying_and_object_members_are_refused(tmp_path):
    header = json.dumps({"format": _FORMAT, "class": LINEAR_NAME,
                         "config": {"in_features": 2, "out_features": 2}})
    arrays = {"param/weight": np.zeros((2, 2), np.float32), "param/bias": np.zeros(2, np.float32)}
    zipped = tmp_path / "zipped.npz"  # a deflated member could be a zip bomb
    np.savez_compressed(zipped, header=np.array(header), checksum=np.array(_checksum(header, arrays)), **arrays)
    with pytest.raises(ValueError, match="not a stored .npy array"):
        rc.load(zipped)
    lying = tmp_path / "lying.npz"  # a member whose header claims 8 GB
    with zipfile.ZipFile(lying, "w") as z:
        fake = np.lib.format.header_data_from_array_1_0(np.zeros(1))
        fake["shape"] = (10**9,)
        with z.open("param/weight.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, fake)
            f.write(b"\0" * 8)
    with pytest.raises(ValueError, match="declares more data than it holds"):
        rc.load(lying)
    # the zip directory may lie too: a member claiming 1 GB (sizes patched) in a file of a few hundred bytes
    fake["shape"] = (10**8,)
    with zipfile.ZipFile(lying, "w") as z:
        with z.open("param/weight.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, fake)
            f.write(b"\0" * 8)
    data = bytearray(lying.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory entry: compressed and uncompressed sizes at 20, 24
    data[entry + 20: entry + 28] = (10**9).to_bytes(4, "little") * 2
    lying.write_bytes(bytes(data))
    with zipfile.ZipFile(lying) as z:
        assert z.infolist()[0].file_size == 10**9
    with pytest.raises(ValueError, match="declares more data than it holds"):
        rc.load(lying)
    objects = tmp_path / "objects.npz"
    np.savez(objects, header=np.array(header), evil=np.array([print], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        rc.load(objects)


def test_a_first_format_file_still_loads(tmp_path):
    lin = rc.Linear(2, 3, seed=0)
    path = tmp_path / "v1.npz"
    _write(path, {"class": LINEAR_NAME, "config": lin.get_config()},
           {f"param/{k}": v for k, v in lin.state_dict().items()}, fmt=_FORMAT_1)
    loaded = rc.load(path)
    np.testing.assert_array_equal(loaded.parameters()["weight"], lin.parameters()["weight"])


def test_module_save_and_load_remain_importable_from_rnncore_module():
    from rnncore import module, serialization

    assert module.save is serialization.save is rc.save and module.load is serialization.load is rc.load


@pytest.mark.parametrize("depth", [300, 5000])
def test_deeply_nested_modules_are_a_value_error_naming_the_file(tmp_path, depth):
    """A crafted config nesting Sequentials deeper than Python recurses (in the JSON decoder at 5000, in the build at
    300) is refused with the documented ValueError naming the file, not a RecursionError."""
    seq = f"{rc.Sequential.__module__}:Sequential"
    leaf = json.dumps({"class": f"{rc.LastHidden.__module__}:LastHidden", "config": {}})
    nested = f'{{"class": "{seq}", "config": {{"modules": [' * depth + leaf + "]}}" * depth
    header = f'{{"format": "{_FORMAT}", "class": "{seq}", "config": {{"modules": [{nested}]}}}}'
    path = tmp_path / "deep.npz"
    np.savez(path, header=np.array(header), checksum=np.array(_checksum(header, {})))
    with pytest.raises(ValueError, match=r"deep\.npz: .*nest"):
        rc.load(path)



def test_arrays_that_do_not_fit_the_config_are_a_value_error_naming_the_file(tmp_path):
    """A file whose parameters do not match the module its config builds (missing, extra or misshaped arrays) is
    refused with the documented ValueError naming the file (was load_state_dict's bare KeyError/ValueError)."""
    path = tmp_path / "mismatch.npz"
    config = rc.Linear(2, 3).get_config()
    weight, bias = np.zeros((3, 2), np.float32), np.zeros(3, np.float32)
    for arrays, message in (({"param/weight": weight}, r"missing \['bias'\]"),
                            ({"param/weight": weight, "param/bias": bias, "param/extra": bias}, "extra"),
                            ({"param/weight": weight.T.copy(), "param/bias": bias}, "shape")):
        _write(path, {"class": LINEAR_NAME, "config": config}, arrays)
        with pytest.raises(ValueError, match=rf"mismatch\.npz: the saved parameters do not fit .*{message}"):
            rc.load(path)
