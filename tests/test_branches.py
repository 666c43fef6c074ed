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


def _refused(build, positions):
    with pytest.raises(ValueError, match="used only once") as info:
        build()
    for position in positions:
        assert repr(position) in str(info.value)
    assert "build two layers" in str(info.value)


def test_one_layer_object_twice_is_refused_in_every_branching_container(rng):
    d = L.Dense(3, 3, rng=rng)
    _refused(lambda: Residual(d, d), ["block", "shortcut"])
    _refused(lambda: Multiply(d, d), ["branch_a", "branch_b"])
    _refused(lambda: models.Concat([d, d]), ["0", "1"])
    _refused(lambda: models.Concat([Sequential(d), L.Tanh(), Sequential(L.ReLU(), d)]), ["0.0", "2.1"])


def test_a_layer_inside_a_block_and_outside_it_is_refused(rng):
    d = L.Dense(3, 3, rng=rng)
    block = Residual(Sequential(L.Tanh(), d))
    _refused(lambda: Sequential(block, d), ["0.block.1", "1"])
    _refused(lambda: Sequential(block, L.ReLU(), block), ["0", "2"])
    _refused(lambda: Multiply(block, Sequential(d)), ["branch_a.block.1", "branch_b.0"])
    # two distinct layers are fine, and so is one container reused across separate models
    Sequential(block, L.Dense(3, 3, rng=rng))
    Sequential(block)


def test_any_container_subclass_checks_its_children(rng):
    class Pair(models.Container):
        def __init__(self, first, second):
            super().__init__()
            self.first, self.second = first, second

        def named_children(self):
            return [("first", self.first), ("second", self.second)]

    class Tagged(Sequential):
        """Adds a child after Sequential's constructor returns: checked once it is set."""

        def __init__(self, head, *layers):
            super().__init__(*layers)
            self.head = head

        def named_children(self):
            return super().named_children() + [("head", self.head)]

    d = L.Dense(3, 3, rng=rng)
    _refused(lambda: Pair(d, d), ["first", "second"])
    _refused(lambda: Tagged(d, L.Tanh(), d), ["1", "head"])
    assert Tagged(L.ReLU(), d).children()[-1].__class__ is L.ReLU
