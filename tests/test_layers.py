"""Layer behaviours beyond the gradient table: worked examples, modes, stability, errors."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import layers as L


def test_lecture_linear_unit_example():
    # h = w^T x, e = (h - y)^2: de/dw = 2 (h - y) x, exactly
    x = np.array([[1.5, -2.0, 0.5]])
    y = np.array([[0.25]])
    unit = L.Dense(3, 1, bias=False).astype(np.float64)
    unit.params["weight"][...] = [[0.2, -0.4, 1.0]]
    loss = L.MSELoss()
    h = unit.forward(x)
    loss.forward(h, y)
    _, grads = unit.backward(loss.backward())
    np.testing.assert_array_equal(grads["weight"], 2 * (h - y) * x)


def test_relu_jacobian_and_dead_units():
    relu = L.ReLU()
    x = np.array([[-1.0, 2.0, -3.0, 4.0]])
    relu.forward(x)
    jac = np.stack([relu.backward(np.eye(4)[[i]])[0][0] for i in range(4)])
    np.testing.assert_array_equal(jac, np.diag([0.0, 1.0, 0.0, 1.0]))
    relu.forward(-np.abs(np.random.default_rng(0).standard_normal((5, 4))) - 0.1)
    dx, _ = relu.backward(np.ones((5, 4)))
    assert not dx.any()  # a dead ReLU passes no gradient


def test_softmax_cross_entropy_gradient_is_softmax_minus_onehot_over_n(rng):
    logits = rng.standard_normal((6, 4))
    labels = np.array([0, 3, 2, 1, 1, 0])
    loss = L.SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss.backward(), (p - np.eye(4)[labels]) / 6, rtol=1e-12)
    np.testing.assert_allclose(value, -np.log(p[np.arange(6), labels]).mean(), rtol=1e-12)


def test_label_smoothing_value(rng):
    logits = rng.standard_normal((3, 5))
    labels = np.array([1, 4, 0])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = 0.9 * np.eye(5)[labels] + 0.1 / 5
    expect = -(target * logp).sum(axis=1).mean()
    assert L.SoftmaxCrossEntropy(label_smoothing=0.1).forward(logits, labels) == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    loss = L.SoftmaxCrossEntropy(label_smoothing=0.1)
    value = loss.forward(logits, np.array([1, 2]))
    grad = loss.backward()
    assert np.isfinite(value) and np.isfinite(grad).all() and grad.dtype == dtype
    assert value > 1e3  # the first row puts -2e4 on the true class


def test_loss_errors():
    loss = L.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="labels must be in"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integer labels"):
        loss.forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2,\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(RuntimeError):
        L.SoftmaxCrossEntropy().backward()
    with pytest.raises(ValueError, match="same shape"):
        L.MSELoss().forward(np.zeros((2, 3)), np.zeros((3,)))


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        out = L.Sigmoid().forward(x)
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-20)


def test_softmax_is_stable():
    out = L.Softmax().forward(np.array([[1000.0, 1000.0, -1000.0]], np.float32))
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.0]])


def test_dropout_train_and_eval(rng):
    layer = L.Dropout(0.25, rng=rng)
    x = np.ones((200, 100), np.float32)
    out = layer.forward(x)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    dx, _ = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, out)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    with pytest.raises(ValueError, match="p must be a finite number in"):
        L.Dropout(1.0)


def test_dropout_is_reproducible_with_seeded_generators():
    x = np.ones((4, 10), np.float32)
    a = L.Dropout(0.5, rng=np.random.default_rng(7)).forward(x)
    b = L.Dropout(0.5, rng=np.random.default_rng(7)).forward(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls,shape,axes", [(L.BatchNorm1D, (64, 3), (0,)), (L.BatchNorm1D, (16, 3, 7), (0, 2)),
                                            (L.BatchNorm2D, (16, 3, 4, 5), (0, 2, 3))])
def test_batchnorm_follows_pytorch_conventions(cls, shape, axes, rng):
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    bn = cls(3, momentum=0.1)
    out = bn.forward(x)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=axes), 1, atol=1e-3)
    n = x.size // 3
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=axes), rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.9 + 0.1 * x.var(axis=axes) * n / (n - 1),
                               rtol=1e-5)
    bn.eval()
    expect_shape = (1, 3) + (1,) * (len(shape) - 2)
    rm, rv = (bn.buffers[k].reshape(expect_shape) for k in ("running_mean", "running_var"))
    np.testing.assert_allclose(bn.forward(x), (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-5, atol=1e-5)
    with L.no_grad():
        bn.forward(x)
    assert bn._cache is None


def test_batchnorm_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"BatchNorm2D: expected input of shape \(N, 3, \*, \*\), got \(2, 4, 5, 5\)"):
        L.BatchNorm2D(3).forward(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        L.BatchNorm1D(3).forward(np.zeros((1, 3), np.float32))


def test_dense_shape_errors_name_the_layer():
    layer = L.Dense(4, 2)
    with pytest.raises(ValueError, match=r"Dense: expected input of shape \(N, 4\), got \(3, 5\)"):
        layer.forward(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"Dense: expected input of shape \(N, 4\), got \(4,\)"):
        layer.forward(np.zeros((4,), np.float32))
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        L.Dense(0, 3)


def test_no_silent_broadcasting_of_upstream_gradient():
    layer = L.Dense(4, 2)
    layer.forward(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"upstream gradient of shape \(3, 2\)"):
        layer.backward(np.zeros((1, 2), np.float32))


@pytest.mark.parametrize("scheme,std", [("he_normal", np.sqrt(2 / 400)), ("he_uniform", np.sqrt(2 / 400)),
                                        ("glorot_normal", np.sqrt(2 / 600)),
                                        ("glorot_uniform", np.sqrt(2 / 600))])
def test_initialisation_scale(scheme, std):
    w = L.Dense(400, 200, init=scheme, rng=np.random.default_rng(0)).params["weight"]
    assert w.dtype == np.float32
    assert abs(w.std() / std - 1) < 0.02
    if scheme.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * std * 1.0001


def test_unknown_init_scheme():
    with pytest.raises(ValueError, match="unknown init scheme"):
        L.Dense(2, 2, init="lecun")


def test_forward_never_mutates_input(rng):
    from layer_table import ROWS
    for _, factory, shape in ROWS:
        x = rng.standard_normal(shape).astype(np.float32)
        before = x.copy()
        layer = factory(rng)
        out = layer.forward(x)
        layer.backward(np.ones_like(out))
        np.testing.assert_array_equal(x, before)


def test_keep_freed_memory_applies_on_glibc():
    # in a child process: the setting is process-wide
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "from layers.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == ("True" if platform.libc_ver()[0] == "glibc" else "False")
