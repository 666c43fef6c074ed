"""Residual and Multiply: the distributor and switcher gates, save/load, summary, errors."""
import numpy as np
import pytest

import layers as L
import models
from examples.custom_layers import gated_linear_unit
from models import Multiply, Residual, Sequential


class Fixed(L.Layer):
    """Multiplies by a constant: a branch whose local gradient is known."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        self._save_for_backward(x.shape)
        return self.k * x

    def backward(self, dout):
        return self.k * dout, {}


def test_addition_distributes_the_gradient():
    node = Residual(Fixed(3.0), Fixed(-2.0))
    x = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(node.forward(x), [[1.0, 2.0]])
    dx, grads = node.backward(np.array([[10.0, 1.0]]))
    # each branch receives the upstream gradient unchanged: 3 * dout + (-2) * dout
    np.testing.assert_array_equal(dx, [[10.0, 1.0]])
    identity = Residual(Fixed(3.0))
    identity.forward(x)
    np.testing.assert_array_equal(identity.backward(np.array([[1.0, 1.0]]))[0], [[4.0, 4.0]])


def test_product_switches_the_gradient():
    node = Multiply(Fixed(2.0), Fixed(5.0))
    x = np.array([[1.0, 3.0]])
    np.testing.assert_array_equal(node.forward(x), [[10.0, 90.0]])
    # branch a (2x) receives dout * b(x) = dout * 5x; branch b receives dout * a(x) = dout * 2x
    dx, _ = node.backward(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(dx, 2.0 * 5 * x + 5.0 * 2 * x)


def test_residual_network_round_trip(tmp_path, rng):
    model = models.zoo.build("resnet_small", (3, 32, 32), rng=rng)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    model.forward(x)
    model.save(tmp_path / "r.npz")
    loaded = models.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert list(model.params) == list(loaded.params)
    assert any(k.startswith("3.block.") for k in model.params)
    text = model.summary(print_fn=None)
    assert "Residual" in text


def test_glu_round_trip(tmp_path, rng):
    glu = Sequential(gated_linear_unit(4, 3, rng))
    glu.save(tmp_path / "g.npz")
    loaded = models.load(tmp_path / "g.npz")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(glu.predict(x), loaded.predict(x))


def test_shape_mismatch_is_reported(rng):
    with pytest.raises(ValueError, match="shortcut gives"):
        Residual(L.Dense(4, 3, rng=rng)).output_shape((4,))
    with pytest.raises(ValueError, match="branch_b gives"):
        Multiply(L.Dense(4, 3, rng=rng), L.Dense(4, 2, rng=rng)).output_shape((4,))
    with pytest.raises(ValueError, match="differ"):
        Residual(L.Dense(4, 3, rng=rng)).forward(np.zeros((2, 4), np.float32))
