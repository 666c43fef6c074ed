"""Backward through eval mode: every layer's backward after an eval-mode forward is the
gradient of the eval-mode function; Dropout is the identity; inference keeps nothing;
fine-tuning with frozen BatchNorm statistics trains."""
import numpy as np
import pytest

import layers as L
from conftest import away_from_kinks
from layer_table import ROWS
from layers.gradcheck import check_layer
from models import Multiply, Residual, Sequential
from optim import SGD


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=[r[0] for r in ROWS])
def test_eval_mode_gradients_float64(name, factory, shape, rng):
    layer = factory(rng).astype(np.float64)
    layer.forward(away_from_kinks(rng, shape) * 3)  # training mode: running statistics move off 0 and 1
    layer.eval()
    report = check_layer(layer, away_from_kinks(rng, shape))
    assert report.passed(), str(report)
    assert not layer.training


def test_dropout_eval_is_the_identity_forward_and_backward(rng):
    for layer in (L.Dropout(0.5, rng=rng).eval(), L.Dropout(0.0, rng=rng)):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        np.testing.assert_array_equal(layer.forward(x), x)
        dout = rng.standard_normal((4, 5)).astype(np.float32)
        dx, grads = layer.backward(dout)
        np.testing.assert_array_equal(dx, dout)
        assert dx is not dout and grads == {}
        with pytest.raises(ValueError, match=r"Dropout.backward: expected upstream gradient of shape \(4, 5\)"):
            layer.backward(np.ones((4, 6), np.float32))
        with pytest.raises(TypeError, match="Dropout.backward: expected the upstream gradient as a numpy array"):
            layer.backward([[1.0] * 5] * 4)


def model_with_everything(rng):
    return Sequential(
        L.Conv2D(1, 4, 3, padding=1, rng=rng), L.BatchNorm2D(4), L.ReLU(),
        Residual(Sequential(L.Conv2D(4, 4, 3, padding=1, rng=rng), L.BatchNorm2D(4), L.Tanh())),
        L.MaxPool2D(2), L.Flatten(), L.Dropout(0.3, rng=rng),
        Multiply(L.Dense(64, 8, rng=rng), Sequential(L.Dense(64, 8, rng=rng), L.Sigmoid())),
        L.BatchNorm1D(8), L.Dense(8, 3, rng=rng))


def test_predict_keeps_nothing_in_any_layer(rng):
    model = model_with_everything(rng)
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    model.forward(x)  # training forward: every layer caches
    assert all(m._cache is not None for m in model.modules() if not isinstance(m, (Sequential, Residual)))
    out = model.predict(x, batch_size=4)
    assert out.shape == (6, 3) and model.training
    assert all(m._cache is None for m in model.modules())
    with pytest.raises(RuntimeError, match="no_grad"):
        model.backward(np.ones_like(out))


def test_repeated_predict_does_not_grow_memory(rng):
    import tracemalloc
    model = model_with_everything(rng)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    model.predict(x)
    tracemalloc.start()
    model.predict(x)
    first = tracemalloc.get_traced_memory()[0]
    for _ in range(5):
        model.predict(x)
    grown = tracemalloc.get_traced_memory()[0] - first
    tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 5 more predict calls"


def test_fine_tuning_with_frozen_batchnorm_statistics(rng):
    model = Sequential(L.Dense(4, 16, rng=rng), L.BatchNorm1D(16), L.ReLU(), L.Dense(16, 3, rng=rng))
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    for _ in range(3):
        model.forward(x)  # running statistics from a few training batches
    model.eval()
    bn = model[1]
    frozen = {k: v.copy() for k, v in bn.buffers.items()}
    bn_params = {k: v.copy() for k, v in bn.params.items()}
    loss_fn, opt = L.SoftmaxCrossEntropy(), SGD(model.params, lr=0.1, momentum=0.9)
    losses = []
    for _ in range(30):
        losses.append(loss_fn.forward(model.forward(x), y))
        _, grads = model.backward(loss_fn.backward())
        opt.step(grads)
    assert losses[-1] < 0.5 * losses[0]
    for k, v in frozen.items():
        np.testing.assert_array_equal(bn.buffers[k], v)  # the statistics stayed frozen
    assert all(not np.array_equal(bn.params[k], v) for k, v in bn_params.items())  # its affine part trained


def test_input_gradient_of_a_model_in_eval_mode(rng):
    """Saliency maps and adversarial examples: d loss / d x of a trained model in eval mode."""
    model = model_with_everything(rng).astype(np.float64)
    model.forward(rng.standard_normal((6, 1, 8, 8)))
    model.eval()
    loss_fn, x, y = L.SoftmaxCrossEntropy(), rng.standard_normal((2, 1, 8, 8)), np.array([0, 2])
    loss_fn.forward(model.forward(x), y)
    dx, _ = model.backward(loss_fn.backward())
    i = (1, 0, 3, 4)
    plus, minus = x.copy(), x.copy()
    plus[i] += 1e-6
    minus[i] -= 1e-6
    numeric = (loss_fn.forward(model.forward(plus), y) - loss_fn.forward(model.forward(minus), y)) / 2e-6
    assert abs(dx[i] - numeric) <= 1e-7 + 1e-5 * abs(numeric)
