"""Every layer configuration in the table: float64 gradient check and float32 in/out."""
import inspect

import numpy as np
import pytest

import layers
from conftest import away_from_kinks
from layer_table import ROWS
from layers.gradcheck import GradcheckReport, check_layer, check_loss


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=[r[0] for r in ROWS])
def test_gradients_float64(name, factory, shape, rng):
    layer = factory(rng).astype(np.float64)
    x = away_from_kinks(rng, shape)
    report = check_layer(layer, x)
    assert {c.name for c in report.checks} == {"input"} | set(layer.params)
    assert report.passed(), str(report)


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=[r[0] for r in ROWS])
def test_float32_in_float32_out(name, factory, shape, rng):
    layer = factory(rng)
    x = away_from_kinks(rng, shape).astype(np.float32)
    out = layer.forward(x)
    dx, grads = layer.backward(np.ones_like(out))
    assert out.dtype == np.float32 and dx.dtype == np.float32
    assert dx.shape == x.shape
    assert set(grads) == set(layer.params)
    for key, g in grads.items():
        assert g.dtype == np.float32 and g.shape == layer.params[key].shape


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=[r[0] for r in ROWS])
def test_output_shape_matches_forward(name, factory, shape, rng):
    layer = factory(rng)
    out = layer.forward(away_from_kinks(rng, shape).astype(np.float32))
    assert out.shape[1:] == tuple(layer.output_shape(shape[1:]))


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=[r[0] for r in ROWS])
def test_backward_before_forward_raises(name, factory, shape, rng):
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        factory(rng).backward(np.ones(shape, np.float32))


def exported_layer_classes():
    import examples.custom_layers
    import models
    return [cls for module in (layers, models, examples.custom_layers)
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, layers.Layer) and cls not in (layers.Layer, models.Container)]


def test_every_exported_layer_is_in_the_table(rng):
    built = set()
    for _, factory, _ in ROWS:
        built.update(type(layer) for layer in factory(rng).modules())
    missing = [cls.__name__ for cls in exported_layer_classes() if cls not in built]
    assert not missing, f"layers without a gradient-check row in tests/layer_table.py: {missing}"


def test_checker_refuses_float32(rng):
    layer = layers.Dense(3, 2, rng=rng)
    with pytest.raises(TypeError, match="float64"):
        check_layer(layer, rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="float64"):
        check_layer(layer.astype(np.float64), rng.standard_normal((2, 3)).astype(np.float32))


def test_checker_catches_a_wrong_backward(rng):
    class BadSquare(layers.Layer):
        def forward(self, x):
            self._save_for_backward(x)
            return x * x

        def backward(self, dout):
            (x,) = self._saved()
            return dout * x, {}  # should be 2 * x

    report = check_layer(BadSquare(), away_from_kinks(rng, (3, 4)))
    assert not report.passed()
    assert report.checks[0].max_rel_error > 0.3
    assert "input" in str(report) and isinstance(report, GradcheckReport)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradcheck(smoothing, rng):
    loss = layers.SoftmaxCrossEntropy(label_smoothing=smoothing)
    report = check_loss(loss, rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2]))
    assert report.passed(), str(report)


def test_mse_gradcheck(rng):
    report = check_loss(layers.MSELoss(), rng.standard_normal((3, 4)), rng.standard_normal((3, 4)))
    assert report.passed(), str(report)
