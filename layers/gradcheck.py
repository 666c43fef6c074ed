"""Central-difference gradient checking for any layer or loss (float64 only).

    from layers.gradcheck import check_layer
    report = check_layer(MyLayer(...).astype(np.float64), x)   # x: float64
    print(report)            # worst relative error per tensor
    assert report.passed()   # every tensor below 1e-6

The layer's output ``out`` is projected on a fixed random tensor ``r`` so that
``L = sum(out * r)`` is a scalar whose gradient is what ``backward(r)`` returns.
Each input and parameter entry is then nudged by +-eps and
``dL/dv ~ sum((out(v+eps) - out(v-eps)) * r) / (2 eps)``.

The relative error of an entry is ``|a - n| / max(|a|, |n|, floor)``: the floor
keeps round-off in entries whose true gradient is ~0 from reading as a large
relative error. Choose inputs away from kinks (ReLU at 0, max-pool ties).
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class TensorCheck:
    """The comparison for one tensor: worst entry and its two gradient values."""
    name: str
    shape: tuple
    max_rel_error: float
    worst_index: tuple
    analytic: float
    numeric: float


class GradcheckReport:
    """Per-tensor results of a gradient check; ``str(report)`` is a readable table."""

    def __init__(self, subject, checks):
        self.subject, self.checks = subject, checks

    @property
    def max_error(self):
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def passed(self, tol=1e-6):
        return self.max_error < tol

    def __str__(self):
        width = max([len("tensor")] + [len(c.name) for c in self.checks]) + 2
        lines = [f"gradient check of {self.subject}",
                 f"  {'tensor':<{width}}{'shape':<18}{'max rel err':>12}  worst entry (analytic vs numeric)"]
        for c in self.checks:
            lines.append(f"  {c.name:<{width}}{str(c.shape):<18}{c.max_rel_error:>12.2e}  "
                         f"{c.worst_index}: {c.analytic:.8g} vs {c.numeric:.8g}")
        return "\n".join(lines)


def _rng_states(layer):
    """Every np.random.Generator held by the layer tree, with its current state."""
    return [(g, g.bit_generator.state) for g in layer.generators()]


def _require_float64(what, value):
    if value.dtype != np.float64:
        raise TypeError(
            f"gradcheck: {what} is {value.dtype}; central differences need float64 "
            "(float32 round-off, ~1e-7 relative, swamps a difference quotient with eps ~1e-6). "
            "Pass float64 data and call layer.astype(np.float64) first.")


def _compare(name, analytic, numeric, floor):
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"gradcheck: gradient of {name} has shape {analytic.shape}, expected {numeric.shape}")
    err = np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    if err.size == 0:
        return TensorCheck(name, numeric.shape, 0.0, (), 0.0, 0.0)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    return TensorCheck(name, numeric.shape, float(err[worst]), tuple(int(i) for i in worst),
                       float(analytic[worst]), float(numeric[worst]))


def _numeric_grad(value, evaluate, eps):
    """d evaluate() / d value by central differences, perturbing ``value`` in place."""
    grad = np.empty_like(value)
    flat, gflat = value.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = evaluate()
        flat[i] = orig - eps
        minus = evaluate()
        flat[i] = orig
        gflat[i] = np.sum((plus - minus) * evaluate.weights) / (2 * eps)
    return grad


def check_layer(layer, x, eps=1e-6, floor=1e-3, seed=0, params=True):
    """Compare ``layer.backward`` with central differences for ``x`` and every parameter.

    The layer must be in float64 (``layer.astype(np.float64)``) and ``x`` float64.
    Random state inside the layer (Dropout masks) is replayed for every
    evaluation and buffers (running statistics) are restored afterwards.
    Returns a :class:`GradcheckReport`.
    """
    x = np.array(x, copy=True)
    _require_float64("the input", x)
    for name, p in layer.params.items():
        _require_float64(f"parameter {name!r}", p)
    rngs = _rng_states(layer)
    buffers = {id(lay): {k: v.copy() for k, v in lay.buffers.items()} for lay in layer.modules()}

    def run():
        for gen, state in rngs:
            gen.bit_generator.state = state
        return np.array(layer.forward(x), dtype=np.float64)

    out = run()
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    dx, grads = layer.backward(weights.copy())
    if set(grads) != set(layer.params):
        raise ValueError(f"gradcheck: backward returned gradients for {sorted(grads)}, "
                         f"but the layer's params are {sorted(layer.params)}")
    run.weights = weights
    checks = [_compare("input", dx, _numeric_grad(x, run, eps), floor)]
    if params:
        for name, p in layer.params.items():
            checks.append(_compare(name, grads[name], _numeric_grad(p, run, eps), floor))
    for lay in layer.modules():
        for k, v in buffers[id(lay)].items():
            lay.buffers[k][...] = v
    return GradcheckReport(repr(layer), checks)


def check_loss(loss, pred, target, eps=1e-6, floor=1e-3):
    """Compare ``loss.backward()`` with central differences of ``loss.forward(pred, target)``."""
    pred = np.array(pred, copy=True)
    _require_float64("pred", pred)
    loss.forward(pred, target)
    analytic = loss.backward()

    def run():
        return np.float64(loss.forward(pred, target))

    run.weights = 1.0
    return GradcheckReport(repr(loss), [_compare("pred", analytic, _numeric_grad(pred, run, eps), floor)])
