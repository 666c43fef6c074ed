"""The gradient checker's criterion over many seeds: no false failure on correct layers
(a user-written LayerNorm, Conv2D -> BatchNorm2D chains whose conv bias has an exactly
zero gradient), while every deliberately wrong backward is caught, with the entry named."""
import numpy as np
import pytest

import layers as L
from layers.gradcheck import check_layer
from models import Sequential

SEEDS = range(200)


class UserLayerNorm(L.Layer):
    """Layer normalisation over the feature axis, as a user would write it.

    Shape:
        x, out:       (N, D)
        weight, bias: (D,)
    """

    def __init__(self, d, eps=1e-5, mistake=None):
        super().__init__()
        self.eps, self.mistake = eps, mistake
        self.params = {"weight": np.ones(d, np.float32), "bias": np.zeros(d, np.float32)}

    def forward(self, x):
        xc = x - x.mean(axis=1, keepdims=True)
        inv_std = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + self.eps)
        xhat = xc * inv_std
        self._save_for_backward(xhat, inv_std)
        return xhat * self.params["weight"] + self.params["bias"]

    def backward(self, dout):
        xhat, inv_std = self._saved()
        d = xhat.shape[1]
        g = dout * self.params["weight"]
        # dx = inv_std / d * (d g - sum(g) - xhat * sum(g xhat)), sums over the feature axis
        mean_term = g.sum(axis=1, keepdims=True)
        var_term = xhat * (g * xhat).sum(axis=1, keepdims=True)
        if self.mistake == "missing_term":
            var_term = 0
        n = d - 1 if self.mistake == "factor_off" else d  # the unbiased count: a factor d / (d - 1)
        dx = inv_std / n * (d * g - mean_term - var_term)
        return dx, {"weight": (dout * xhat).sum(axis=0), "bias": dout.sum(axis=0)}


class WrongBatchNorm2D(L.BatchNorm2D):
    """BatchNorm2D whose input gradient forgets the mean term (``- sum(dout) / n``)."""

    def backward(self, dout):
        dx, grads = super().backward(dout)
        inv_std = self._cache[1]
        mean = dout.mean(axis=(0, 2, 3), keepdims=True) * self.params["weight"].reshape(1, -1, 1, 1)
        return dx + mean * inv_std.reshape(1, -1, 1, 1), grads


class TransposedDense(L.Dense):
    """Dense whose input gradient uses the weight transposed (``dout @ W.T``), square only."""

    def backward(self, dout):
        _, grads = super().backward(dout)
        return dout @ self.params["weight"].T, grads


class HalfWeightGradDense(L.Dense):
    """Dense whose weight gradient is off by a factor of 2."""

    def backward(self, dout):
        dx, grads = super().backward(dout)
        return dx, {**grads, "weight": grads["weight"] / 2}


def conv_bn(rng):
    return Sequential(L.Conv2D(1, 2, 3, padding=1, rng=rng), L.BatchNorm2D(2))


def conv_bn_tanh(rng):
    return Sequential(L.Conv2D(1, 2, 2, rng=rng), L.BatchNorm2D(2), L.Tanh())


CORRECT = [
    ("user_layernorm", lambda r: UserLayerNorm(128), (2, 128)),  # wide: many entries near 0
    ("conv_bn", conv_bn, (3, 1, 3, 3)),
    ("conv_bn_tanh", conv_bn_tanh, (2, 1, 3, 3)),
]

WRONG = [
    ("layernorm_factor_off", lambda r: UserLayerNorm(6, mistake="factor_off"), (4, 6), "input"),
    ("layernorm_missing_term", lambda r: UserLayerNorm(6, mistake="missing_term"), (4, 6), "input"),
    ("batchnorm_missing_mean_term", lambda r: Sequential(L.Conv2D(1, 2, 3, padding=1, rng=r),
                                                         WrongBatchNorm2D(2)), (3, 1, 3, 3), "input"),
    ("dense_transposed_weight", lambda r: Sequential(TransposedDense(4, 4, rng=r), L.Tanh()), (3, 4), "input"),
    ("dense_weight_grad_halved", lambda r: HalfWeightGradDense(4, 3, rng=r), (3, 4), "weight"),
]


def random_input(rng, shape):
    """Standard normal values at a random scale between 0.1 and 10."""
    return rng.standard_normal(shape) * rng.uniform(0.1, 10)


@pytest.mark.parametrize("name,factory,shape", CORRECT, ids=[c[0] for c in CORRECT])
def test_no_false_failure_over_many_seeds(name, factory, shape):
    failed = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        layer = factory(rng).astype(np.float64)
        for p in layer.params.values():  # away from the initial values, e.g. weight = 1
            p += rng.uniform(-0.5, 0.5, p.shape)
        report = check_layer(layer, random_input(rng, shape), seed=10_000 + seed)  # r independent of x
        if not report.passed():
            failed.append((seed, str(report)))
    assert not failed, f"{len(failed)} false failures, first:\n{failed[0][1] if failed else ''}"


def test_an_exactly_zero_gradient_passes(rng):
    report = check_layer(conv_bn(rng).astype(np.float64), random_input(rng, (3, 1, 3, 3)))
    bias = next(c for c in report.checks if c.name == "0.bias")
    assert np.abs(bias.numeric).max() < 1e-8  # the true gradient is 0
    assert report.passed(), str(report)


@pytest.mark.parametrize("name,factory,shape,tensor", WRONG, ids=[w[0] for w in WRONG])
def test_every_wrong_backward_is_caught_over_many_seeds(name, factory, shape, tensor):
    missed = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        layer = factory(rng).astype(np.float64)
        report = check_layer(layer, random_input(rng, shape), seed=10_000 + seed)
        check = next(c for c in report.checks if c.name.endswith(tensor))
        if report.passed() or check.failures() == 0:
            missed.append(seed)
    assert not missed, f"wrong backward passed for seeds {missed[:10]}"


def test_the_report_names_the_entry_and_why(rng):
    report = check_layer(HalfWeightGradDense(4, 3, rng=rng).astype(np.float64), random_input(rng, (3, 4)))
    text = str(report)
    weight = next(c for c in report.checks if c.name == "weight")
    i = weight.worst_index()
    assert not report.passed() and report.max_error > 1
    line = next(line for line in text.splitlines() if line.strip().startswith("weight"))
    assert f"FAIL in {weight.failures()} of 12 entries" in line
    assert f"worst weight{list(i)}: analytic {weight.analytic[i]:.8g} vs numeric {weight.numeric[i]:.8g}" in line
    assert "> bound" in line and "<= bound = 1e-07 + 1e-05 * |numeric|" in text
    assert any(line.split()[:3] == ["input", "(3,", "4)"] and "ok;" in line for line in text.splitlines())


def test_tolerances_can_be_tightened_or_loosened(rng):
    report = check_layer(HalfWeightGradDense(4, 3, rng=rng).astype(np.float64), random_input(rng, (3, 4)))
    assert not report.passed() and report.passed(rtol=1.0, atol=1e-7)
    good = check_layer(L.Dense(4, 3, rng=rng).astype(np.float64), random_input(rng, (3, 4)), rtol=0, atol=1e-15)
    assert not good.passed() and good.passed(rtol=1e-5, atol=1e-7)
