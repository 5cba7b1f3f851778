"""The cell table (rnncore._cell_table) drives the layers, cells, streams, the Keras exchange and the self-check: every
row builds a layer, a cell and a stream whose outputs equal the row's reference, and every kind has its classes."""

import json

import numpy as np
import pytest

import rnncore as rc
from rnncore import interop
from rnncore._cell_table import KINDS, VARIANTS
from rnncore.layers import _Cell, _Recurrent

from support.tolerances import tol

VARIANT_IDS = [v.name for v in VARIANTS]
LAYER_OF = {cls.kind.name: cls for cls in _Recurrent.__subclasses__()}
CELL_OF = {cls.kind.name: cls for cls in _Cell.__subclasses__()}


def test_every_kind_has_a_layer_and_a_cell_and_every_variant_a_kind():
    assert set(LAYER_OF) == set(CELL_OF) == set(KINDS)
    assert {v.kind.name for v in VARIANTS} == set(KINDS)
    for kind in KINDS.values():
        assert len(kind.keras.gate_order) == kind.n_gates
        assert sorted(kind.keras.gate_order) == list(range(kind.n_gates))
        assert set(kind.keras_unit_bias) <= set(kind.gates)
        assert kind.forward.__name__ == f"{kind.name}_forward" == kind.reference_forward.__name__


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_each_row_builds_a_layer_a_cell_and_a_stream_that_agree_with_its_reference(variant):
    kind, options = variant.kind, variant.options
    T, B, I, H = 4, 3, 2, 5
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    layer = LAYER_OF[kind.name](I, H, dtype=np.float64, seed=0, **options)
    cell = CELL_OF[kind.name](I, H, dtype=np.float64, seed=0, **options)
    assert layer.kind is kind and cell.kind is kind
    weights = [layer.parameters()[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    cell.load_state_dict({n[:-3]: p for n, p in layer.parameters().items()})

    y_ref, *final_ref, _ = variant.reference_forward(x, *[None] * kind.n_states, *weights, training=False)
    y, final = layer(x)
    close = tol("kernel_vs_reference", np.float64)
    np.testing.assert_allclose(y, y_ref, **close)
    finals = final if kind.n_states > 1 else (final,)
    assert len(finals) == kind.n_states
    for got, want in zip(finals, final_ref):
        np.testing.assert_allclose(got[0], want, **close)

    state, stream = None, cell.eval().stream(batch=B)
    for t in range(T):
        state = cell(x[t], state)
        h = stream.step(x[t])
        np.testing.assert_allclose(h, y_ref[t], **close)
        for got, want in zip(*[s if kind.n_states > 1 else (s,) for s in (state, stream.state)]):
            np.testing.assert_allclose(got, want, **close)
        np.testing.assert_allclose(state[0] if kind.n_states > 1 else state, y_ref[t], **close)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_each_row_round_trips_through_keras_weights(variant):
    layer = LAYER_OF[variant.kind.name](3, 4, dtype=np.float64, seed=2, **variant.options)
    option = variant.kind.keras.two_bias_rows_option
    for name, p in layer.parameters().items():
        if name.startswith("bias_hh") and not (option and variant.options[option]):
            p[...] = 0.0  # Keras keeps one bias: round trips are exact when the second is zero
    keras = interop.to_keras(layer)
    kernel, recurrent = keras[:2]
    assert kernel.shape == (3, variant.kind.n_gates * 4) and recurrent.shape == (4, variant.kind.n_gates * 4)
    copy = LAYER_OF[variant.kind.name](3, 4, dtype=np.float64, seed=9, **variant.options)
    interop.from_keras(copy, keras)
    for name, p in layer.parameters().items():
        np.testing.assert_array_equal(copy.parameters()[name], p, err_msg=name)


def test_keras_init_sets_the_rows_unit_bias_gates():
    for kind_name, layer_cls in LAYER_OF.items():
        kind = KINDS[kind_name]
        b = layer_cls(2, 3, init="keras", seed=0).parameters()["bias_ih_l0"].reshape(kind.n_gates, 3)
        for g, gate in enumerate(kind.gates):
            assert np.all(b[g] == (1.0 if gate in kind.keras_unit_bias else 0.0)), (kind_name, gate)


def test_unknown_options_are_refused_like_a_python_signature():
    with pytest.raises(TypeError, match=r"LSTM.__init__\(\) got an unexpected keyword argument 'reset_after'"):
        rc.LSTM(2, 3, reset_after=True)
    with pytest.raises(TypeError, match=r"GRUCell.__init__\(\) got an unexpected keyword argument 'nonlinearity'"):
        rc.GRUCell(2, 3, nonlinearity="relu")


def test_saves_name_the_public_module_and_old_saves_load(tmp_path):
    """rnncore.save records 'rnncore.layers:GRU' (the public path, not the file the class lives in)."""
    layer = rc.GRU(2, 3, reset_after=False, seed=4)
    path = tmp_path / "gru.npz"
    rc.save(layer, path)
    with np.load(path) as f:
        assert json.loads(str(f["header"]))["class"] == "rnncore.layers:GRU"
    loaded = rc.load(path)
    assert type(loaded) is rc.GRU and loaded.get_config() == layer.get_config()
    for name, p in layer.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], p)
