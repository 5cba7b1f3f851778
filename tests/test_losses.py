"""rnncore.losses (softmax cross-entropy, MSE) and rnncore.utils gradient clipping: against plain NumPy formulas,
float64 central differences, and PyTorch's answers stored in tests/fixtures/torch_losses.npz."""

import math

import numpy as np
import pytest

from rnncore import losses
from rnncore.nn import Linear
from rnncore.utils import clip_grad_norm, clip_grad_value

from support.arrays import DTYPES, numerical_gradient
from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close


@pytest.fixture(scope="module")
def torch_fixture():
    return load_npz(FIXTURE_DIR / "torch_losses.npz")


def naive_ce(logits, targets, mask):
    """-log softmax(logits)[target] per position (float64, no stabilisation beyond the row max), 0 where masked."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    t = np.where(mask, targets, 0)
    return np.where(mask, -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0], 0.0)


# ---- softmax cross-entropy -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("masked", [False, True])
def test_ce_matches_numpy_formula(dtype, reduction, shape, masked, rng):
    C = 5
    logits = (3 * rng.standard_normal(shape + (C,))).astype(dtype)
    targets = rng.integers(0, C, size=shape)
    mask = rng.random(shape) < 0.7 if masked else np.ones(shape, bool)
    if masked:
        targets = np.where(mask, targets, -100)  # excluded positions may hold anything (here torch's ignore value)
    loss, grad = losses.softmax_cross_entropy(logits, targets, mask if masked else None, reduction=reduction)
    per = naive_ce(logits, targets, mask)
    p = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    p[np.eye(C, dtype=bool)[np.where(mask, targets, 0)]] -= 1
    p *= mask[..., None]
    n = mask.sum()
    if reduction == "none":
        assert loss.shape == shape and loss.dtype == dtype
        assert_close(loss, per, "kernel_vs_reference", dtype, "loss")
        want_grad = p
    elif reduction == "sum":
        assert isinstance(loss, float)
        assert_close(loss, per.sum(), "kernel_vs_reference", dtype, "loss")
        want_grad = p
    else:
        assert_close(loss, per.sum() / n if n else 0.0, "kernel_vs_reference", dtype, "loss")
        want_grad = p / n if n else 0 * p
    assert grad.shape == logits.shape and grad.dtype == dtype
    assert_close(grad, want_grad, "kernel_vs_reference", dtype, "dlogits")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_gradcheck(reduction, rng):
    logits = rng.standard_normal((3, 4, 6))
    targets = rng.integers(0, 6, size=(3, 4))
    mask = rng.random((3, 4)) < 0.6
    weights = rng.standard_normal((3, 4)) if reduction == "none" else None

    def f():
        loss, _ = losses.softmax_cross_entropy(logits, targets, mask, reduction)
        return float(np.sum(loss * weights)) if reduction == "none" else loss

    _, grad = losses.softmax_cross_entropy(logits, targets, mask, reduction)
    if reduction == "none":
        grad = grad * weights[..., None]  # the returned gradient is that of loss.sum(): scale per position
    assert_close(grad, numerical_gradient(f, logits), "gradcheck", np.float64, "dlogits")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_matches_torch(torch_fixture, dtype, reduction):
    f = torch_fixture
    loss, grad = losses.softmax_cross_entropy(f[f"{dtype}.ce.logits"], f["ce.targets"], f["ce.mask"], reduction)
    assert_close(loss, f[f"{dtype}.ce.{reduction}.loss"], "fixture", dtype, "loss")
    assert_close(grad, f[f"{dtype}.ce.{reduction}.grad"], "fixture", dtype, "dlogits")


def test_ce_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e30, 1e30, 0.0]], np.float32)
    loss, grad = losses.softmax_cross_entropy(logits, np.array([0, 0]), reduction="none")
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    assert loss[0] == 0 and loss[1] == np.float32(2e30)
    np.testing.assert_array_equal(grad, [[0, 0, 0], [-1, 1, 0]])


def test_ce_masked_positions_are_inert():
    """No loss or gradient from excluded positions, whatever their logits (NaN, inf) or targets hold."""
    logits = np.array([[0.0, 1.0], [np.nan, np.inf]])
    loss, grad = losses.softmax_cross_entropy(logits, np.array([1, 99]), np.array([True, False]))
    assert_close(loss, np.log1p(np.exp(-1.0)), "kernel_vs_reference", np.float64, "loss")
    assert np.isfinite(grad).all() and not grad[1].any()


def test_ce_all_masked_mean_is_zero():
    logits = np.ones((2, 3, 4), np.float32)
    loss, grad = losses.softmax_cross_entropy(logits, np.zeros((2, 3), np.int64), np.zeros((2, 3)), "mean")
    assert loss == 0.0 and grad.shape == logits.shape and grad.dtype == np.float32 and not grad.any()
    loss, grad = losses.softmax_cross_entropy(np.ones((0, 4)), np.zeros((0,), np.int64))
    assert loss == 0.0 and grad.shape == (0, 4)


def test_ce_mask_forms_and_broadcast(rng):
    logits = rng.standard_normal((2, 3, 4))
    targets = rng.integers(0, 4, size=(2, 3))
    keep = np.array([[1, 1, 0], [1, 0, 0]])
    want = losses.softmax_cross_entropy(logits, targets, keep.astype(bool))
    for form in (keep, keep.astype(np.float32), keep.astype(np.uint8)):
        got = losses.softmax_cross_entropy(logits, targets, form)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])
    # a [T]-shaped mask broadcasts over the batch axis in front
    row = np.array([True, False, True])
    loss, _ = losses.softmax_cross_entropy(logits, targets, row)
    assert loss == losses.softmax_cross_entropy(logits, targets, np.broadcast_to(row, (2, 3)))[0]


def test_ce_bad_input():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"targets must lie in 0\.\.C-1 = 0\.\.2, got \[3\]"):
        losses.softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\), got shape \(2, 1\)"):
        losses.softmax_cross_entropy(logits, np.array([[0], [1]]))
    with pytest.raises(TypeError, match="targets must hold integers"):
        losses.softmax_cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="logits must have dtype float32 or float64"):
        losses.softmax_cross_entropy(logits.astype(np.int32), np.array([0, 1]))
    with pytest.raises(ValueError, match="logits must have shape"):
        losses.softmax_cross_entropy(np.ones(()), np.array(0))
    with pytest.raises(ValueError, match="mask must be broadcastable"):
        losses.softmax_cross_entropy(logits, np.array([0, 1]), np.ones(3, bool))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        losses.softmax_cross_entropy(logits, np.array([0, 1]), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.softmax_cross_entropy(logits, np.array([0, 1]), reduction="avg")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("masked", [False, True])
def test_ce_exact_call_equals_the_checked_path_bit_for_bit(dtype, reduction, eps, masked, rng):
    """int64 targets, a bool mask of the positions' shape and C-contiguous logits take the fast path (the kernel
    checks the targets' range); lists, 0/1 masks and strided logits take the full checks: the same bits."""
    logits = rng.standard_normal((3, 4, 5)).astype(dtype)
    targets = rng.integers(0, 5, (3, 4))
    mask = rng.random((3, 4)) < 0.7 if masked else None
    targets[~mask if masked else np.zeros((3, 4), bool)] = 99  # excluded positions' targets are never read
    fast = losses.softmax_cross_entropy(logits, targets, mask, reduction, eps)
    slow = losses.softmax_cross_entropy(np.asfortranarray(logits), targets.tolist(),
                                        None if mask is None else mask.astype(np.int8), reduction, eps)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    assert type(fast[0]) is type(slow[0])


def test_ce_exact_call_with_a_bad_kept_target_names_it():
    logits, mask = np.zeros((2, 3), np.float32), np.array([True, False])
    with pytest.raises(ValueError, match=r"targets must lie in 0\.\.C-1 = 0\.\.2, got \[-1\]"):
        losses.softmax_cross_entropy(logits, np.array([-1, 0]), mask)
    loss, grad = losses.softmax_cross_entropy(logits, np.array([1, 7]), mask)  # the bad one is excluded
    assert loss == pytest.approx(math.log(3)) and not grad[1].any()


# ---- cross-entropy with class probabilities and label smoothing ---------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_label_smoothing_matches_torch(torch_fixture, dtype, reduction):
    """Class indices with label_smoothing=0.1 and masked (ignore_index) positions: torch's numbers, and "mean"
    divides by the counted positions as torch's mean with ignore_index does."""
    f = torch_fixture
    loss, grad = losses.softmax_cross_entropy(f[f"{dtype}.ce.logits"], f["ce.targets"], f["ce.mask"], reduction,
                                              label_smoothing=0.1)
    assert_close(loss, f[f"{dtype}.ce_ls.{reduction}.loss"], "fixture", dtype, "loss")
    assert_close(grad, f[f"{dtype}.ce_ls.{reduction}.grad"], "fixture", dtype, "dlogits")
    assert grad.dtype == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0, 0.2])
def test_ce_probability_targets_match_torch(torch_fixture, dtype, reduction, eps):
    f = torch_fixture
    logits, probs = f[f"{dtype}.ce_prob.logits"], f[f"{dtype}.ce_prob.targets"]
    loss, grad = losses.softmax_cross_entropy(logits, probs, reduction=reduction, label_smoothing=eps)
    assert_close(loss, f[f"{dtype}.ce_prob.ls{eps}.{reduction}.loss"], "fixture", dtype, "loss")
    assert_close(grad, f[f"{dtype}.ce_prob.ls{eps}.{reduction}.grad"], "fixture", dtype, "dlogits")
    assert grad.dtype == dtype and grad.shape == logits.shape


@pytest.mark.parametrize("kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_smoothed_and_probability_gradcheck(kind, reduction, rng):
    logits = rng.standard_normal((3, 4, 6))
    if kind == "indices":
        targets = rng.integers(0, 6, size=(3, 4))
    else:
        targets = rng.random((3, 4, 6))  # not normalised: the gradient must hold for any q (softmax * sum(q) - q)
    mask = rng.random((3, 4)) < 0.6
    weights = rng.standard_normal((3, 4)) if reduction == "none" else None

    def f():
        loss, _ = losses.softmax_cross_entropy(logits, targets, mask, reduction, label_smoothing=0.3)
        return float(np.sum(loss * weights)) if reduction == "none" else loss

    _, grad = losses.softmax_cross_entropy(logits, targets, mask, reduction, label_smoothing=0.3)
    if reduction == "none":
        grad = grad * weights[..., None]
    assert_close(grad, numerical_gradient(f, logits), "gradcheck", np.float64, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.25, 1.0])
def test_ce_one_hot_probabilities_equal_class_indices(dtype, eps, rng):
    logits = (3 * rng.standard_normal((4, 3, 5))).astype(dtype)
    targets = rng.integers(0, 5, size=(4, 3))
    one_hot = np.eye(5, dtype=dtype)[targets]
    mask = rng.random((4, 3)) < 0.7
    for reduction in ("mean", "sum", "none"):
        by_index = losses.softmax_cross_entropy(logits, targets, mask, reduction, label_smoothing=eps)
        by_prob = losses.softmax_cross_entropy(logits, one_hot, mask, reduction, label_smoothing=eps)
        assert_close(by_prob[0], by_index[0], "kernel_vs_reference", dtype, f"{reduction} loss")
        assert_close(by_prob[1], by_index[1], "kernel_vs_reference", dtype, f"{reduction} dlogits")


def test_ce_probability_targets_masked_positions_are_inert():
    """Excluded positions give no loss or gradient whatever their logits or probabilities hold; "mean" divides by
    the counted positions."""
    logits = np.array([[0.0, 1.0], [np.nan, np.inf], [2.0, 0.0]])
    probs = np.array([[0.25, 0.75], [np.nan, 1.0], [1.0, 0.0]])
    mask = np.array([True, False, True])
    loss, grad = losses.softmax_cross_entropy(logits, probs, mask)
    kept = losses.softmax_cross_entropy(logits[mask], probs[mask], reduction="sum")[0]
    assert_close(loss, kept / 2, "kernel_vs_reference", np.float64, "loss")
    assert np.isfinite(grad).all() and not grad[1].any()


def test_ce_probability_and_smoothing_bad_input():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"targets must hold integers \(class indices of shape \(2,\)\) or be class "
                                        r"probabilities of the logits' shape \[\.\.\., C\] = \(2, 3\), got dtype "
                                        r"float32 and shape \(2, 4\)"):
        losses.softmax_cross_entropy(logits, np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"targets \(class probabilities\) have dtype float64, expected float32 like "
                                        r"logits"):
        losses.softmax_cross_entropy(logits, np.zeros((2, 3)))
    for one_hot in (np.eye(3, dtype=np.int64)[[0, 2]], np.eye(3, dtype=bool)[[0, 2]]):  # said "must have shape (2,)"
        with pytest.raises(TypeError, match=rf"targets of the logits' shape \(2, 3\) have dtype {one_hot.dtype}: class "
                                            r"probabilities \(e.g. one-hot rows\) must have the logits' dtype float32"):
            losses.softmax_cross_entropy(logits, one_hot)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing must"):
            losses.softmax_cross_entropy(logits, np.array([0, 1]), label_smoothing=bad)
    with pytest.raises(TypeError, match="label_smoothing must be a real number, got str"):
        losses.softmax_cross_entropy(logits, np.array([0, 1]), label_smoothing="0.1")


# ---- MSE -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch_and_formula(torch_fixture, dtype, reduction):
    f = torch_fixture
    pred, target = f[f"{dtype}.mse.pred"], f[f"{dtype}.mse.target"]
    loss, grad = losses.mse(pred, target, reduction)
    assert_close(loss, f[f"{dtype}.mse.{reduction}.loss"], "fixture", dtype, "loss")
    assert_close(grad, f[f"{dtype}.mse.{reduction}.grad"], "fixture", dtype, "dpred")
    d = pred.astype(np.float64) - target
    want = {"mean": (d ** 2).mean(), "sum": (d ** 2).sum(), "none": d ** 2}[reduction]
    assert_close(loss, want, "kernel_vs_reference", dtype, "loss vs formula")
    assert grad.dtype == pred.dtype


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradcheck(reduction, rng):
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    _, grad = losses.mse(pred, target, reduction)
    numeric = numerical_gradient(lambda: losses.mse(pred, target, reduction)[0], pred)
    assert_close(grad, numeric, "gradcheck", np.float64, "dpred")


def test_mse_bad_input_and_empty():
    with pytest.raises(ValueError, match="target must have shape"):
        losses.mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="target has dtype float32, expected float64"):
        losses.mse(np.zeros(3), np.zeros(3, np.float32))
    loss, grad = losses.mse(np.zeros((0, 2)), np.zeros((0, 2)))
    assert loss == 0.0 and grad.shape == (0, 2)


# ---- clipping ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tag,norm_type", [("2", 2.0), ("3", 3), ("inf", math.inf)])
def test_clip_grad_norm_matches_torch(torch_fixture, dtype, tag, norm_type):
    f = torch_fixture
    grads = {"g0": f[f"{dtype}.clip.g0"].copy(), "g1": f[f"{dtype}.clip.g1"].copy()}
    total = clip_grad_norm(grads, 0.5, norm_type=norm_type)
    assert isinstance(total, float)
    assert_close(total, f[f"{dtype}.clip.p{tag}.total"], "fixture", dtype, "total_norm")
    for k in grads:
        assert grads[k].dtype == dtype
        assert_close(grads[k], f[f"{dtype}.clip.p{tag}.{k}"], "fixture", dtype, k)


def test_clip_grad_norm_rule(rng):
    g = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    before = [a.copy() for a in g]
    total = clip_grad_norm(g, 1e9)  # under the limit: untouched
    assert_close(total, np.sqrt(sum((a ** 2).sum() for a in before)), "kernel_vs_reference", np.float64, "total")
    for a, b in zip(g, before):
        np.testing.assert_array_equal(a, b)
    clip_grad_norm(g, 1.0)
    coef = 1.0 / (total + 1e-6)
    for a, b in zip(g, before):
        assert_close(a, b * coef, "kernel_vs_reference", np.float64, "clipped")
    new_norm = np.sqrt(sum((a ** 2).sum() for a in g))
    assert_close(new_norm, total / (total + 1e-6), "kernel_vs_reference", np.float64, "new norm")  # just under 1


def test_clip_grad_norm_on_a_model_in_place(rng):
    lin = Linear(3, 2, dtype=np.float64, seed=0)
    lin(rng.standard_normal((10, 3)))
    lin.backward(100 * rng.standard_normal((10, 2)))
    total = clip_grad_norm(lin, 0.1)
    assert total > 0.1
    norm = np.sqrt(sum((g ** 2).sum() for g in lin.gradients().values()))
    assert_close(norm, 0.1 * total / (total + 1e-6), "kernel_vs_reference", np.float64, "norm after")


def test_clip_grad_norm_nonfinite_and_bad_args():
    g = {"a": np.array([1.0, np.nan])}
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm(g, 1.0, error_if_nonfinite=True)
    assert math.isnan(clip_grad_norm(g, 1.0))
    assert np.isnan(g["a"]).all()  # torch's behaviour: the NaN coefficient spreads
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm({"a": np.ones(2)}, 1.0, norm_type=0)
    with pytest.raises(TypeError, match="gradient a must be a numpy.ndarray"):
        clip_grad_norm({"a": [1.0]}, 1.0)
    with pytest.raises(TypeError, match="grads must be"):
        clip_grad_norm(3.0, 1.0)
    assert clip_grad_norm({}, 1.0) == 0.0


@pytest.mark.parametrize("norm_type", [math.inf, 2.0, 1.0, 3.0])
def test_clip_grad_norm_nan_in_a_later_gradient(norm_type):
    """A NaN in any gradient (not only the first) makes the total NaN, as in torch (max() would skip it)."""
    g = {"a": np.array([2.0, 1.0]), "b": np.array([np.nan])}
    assert math.isnan(clip_grad_norm(g, 1.0, norm_type=norm_type))
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm({"a": np.array([2.0]), "b": np.array([np.nan])}, 1.0, norm_type=norm_type,
                       error_if_nonfinite=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_value_matches_torch(torch_fixture, dtype):
    f = torch_fixture
    grads = [f[f"{dtype}.clip.g0"].copy(), f[f"{dtype}.clip.g1"].copy()]
    assert clip_grad_value(grads, 0.3) is None
    for i, k in enumerate(("g0", "g1")):
        np.testing.assert_array_equal(grads[i], f[f"{dtype}.clip.value.{k}"])
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(grads, -0.1)
