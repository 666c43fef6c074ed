"""Central-difference gradient checking for any layer or loss (float64 only).

    from layers.gradcheck import check_layer
    report = check_layer(MyLayer(...).astype(np.float64), x)   # x: float64
    print(report)            # per tensor: pass or fail, the worst entry and why
    assert report.passed()

The layer's output ``out`` is projected on a fixed random tensor ``r`` so that
``L = sum(out * r)`` is a scalar whose gradient is what ``backward(r)`` returns.
Each input and parameter entry is then nudged by +-eps and
``dL/dv ~ sum((out(v+eps) - out(v-eps)) * r) / (2 eps)``.

An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``, the
criterion of ``numpy.allclose`` and ``torch.autograd.gradcheck``. The absolute
part absorbs the round-off of the difference quotient, about
``1e-16 * |L| / eps``, which a purely relative test reads as a large error
wherever the true gradient is ~0 (a Conv2D bias followed by BatchNorm has an
exactly zero one); the relative part scales with the gradient. The defaults
(``rtol=1e-5``, ``atol=1e-7``) sit orders of magnitude above the errors of correct
layers in float64 and far below those of a wrong backward (a factor off, a
transposed weight, a missing term). Choose inputs away from kinks (ReLU at 0,
max-pool ties).
"""
from dataclasses import dataclass

import numpy as np

RTOL = 1e-5
ATOL = 1e-7


@dataclass
class TensorCheck:
    """The analytic and numeric gradients of one tensor, and how they compare."""
    name: str
    analytic: np.ndarray
    numeric: np.ndarray

    @property
    def shape(self):
        return self.numeric.shape

    def excess(self, rtol=RTOL, atol=ATOL):
        """Per entry ``|a - n| / (atol + rtol * |n|)``: an entry fails above 1."""
        return np.abs(self.analytic - self.numeric) / (atol + rtol * np.abs(self.numeric))

    def failures(self, rtol=RTOL, atol=ATOL):
        """Number of entries outside the tolerance."""
        return int(np.count_nonzero(self.excess(rtol, atol) > 1))

    def worst_index(self, rtol=RTOL, atol=ATOL):
        """Index of the entry furthest outside (or least inside) the tolerance; () if empty."""
        if self.numeric.size == 0:
            return ()
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(self.excess(rtol, atol))), self.shape))

    @property
    def max_abs_error(self):
        return float(np.max(np.abs(self.analytic - self.numeric), initial=0.0))

    @property
    def max_rel_error(self):
        """Largest ``|a - n| / max(|a|, |n|)`` over entries where either is non-zero."""
        diff = np.abs(self.analytic - self.numeric)
        scale = np.maximum(np.abs(self.analytic), np.abs(self.numeric))
        return float(np.max(np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0), initial=0.0))

    def describe(self, rtol=RTOL, atol=ATOL, width=0):
        """One line: the tensor, its verdict and its worst entry with the numbers that decide it."""
        head = f"{self.name:<{width}}  {str(self.shape):<14}"
        if self.numeric.size == 0:
            return f"{head}ok (empty)"
        i = self.worst_index(rtol, atol)
        a, n = float(self.analytic[i]), float(self.numeric[i])
        failed = self.failures(rtol, atol)
        verdict = f"FAIL in {failed} of {self.numeric.size} entries;" if failed else "ok;"
        return (f"{head}{verdict} worst {self.name}{list(i)}: analytic {a:.8g} vs numeric {n:.8g}, "
                f"|diff| {abs(a - n):.2e} {'>' if failed else '<='} bound {atol + rtol * abs(n):.2e}")


class GradcheckReport:
    """Per-tensor results of a gradient check; ``str(report)`` says what failed and why."""

    def __init__(self, subject, checks, rtol=RTOL, atol=ATOL):
        self.subject, self.checks, self.rtol, self.atol = subject, checks, rtol, atol

    @property
    def max_error(self):
        """The worst entry's ``|a - n| / (atol + rtol * |n|)``: the check passes at or below 1."""
        return max((float(np.max(c.excess(self.rtol, self.atol), initial=0.0)) for c in self.checks),
                   default=0.0)

    def passed(self, rtol=None, atol=None):
        """True when every entry of every tensor is within ``atol + rtol * |numeric|``
        (the tolerances given to the check unless overridden here)."""
        rtol = self.rtol if rtol is None else rtol
        atol = self.atol if atol is None else atol
        return all(c.failures(rtol, atol) == 0 for c in self.checks)

    def __str__(self):
        width = max([len(c.name) for c in self.checks], default=0)
        lines = [f"gradient check of {self.subject}",
                 f"  an entry passes when |analytic - numeric| <= bound = {self.atol:g} + {self.rtol:g} * |numeric|"]
        return "\n".join(lines + [f"  {c.describe(self.rtol, self.atol, width)}" for c in self.checks])


def _require_float64(what, value):
    if value.dtype != np.float64:
        raise TypeError(
            f"gradcheck: {what} is {value.dtype}; central differences need float64 "
            "(float32 round-off, ~1e-7 relative, swamps a difference quotient with eps ~1e-6). "
            "Pass float64 data and call layer.astype(np.float64) first.")


def _as_check(name, analytic, numeric):
    if not isinstance(analytic, np.ndarray):
        raise TypeError(f"gradcheck: gradient of {name} is {type(analytic).__name__}, not a numpy array")
    if analytic.shape != numeric.shape:
        raise ValueError(f"gradcheck: gradient of {name} has shape {analytic.shape}, expected {numeric.shape}")
    return TensorCheck(name, analytic.astype(np.float64), numeric)


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


def check_layer(layer, x, eps=1e-6, seed=0, params=True, rtol=RTOL, atol=ATOL):
    """Compare ``layer.backward`` with central differences for ``x`` and every parameter.

    The layer must be in float64 (``layer.astype(np.float64)``) and ``x`` float64.
    It is checked in its current mode (``layer.eval()`` checks the eval-mode
    backward). Random state inside the layer (Dropout masks) is replayed for every
    evaluation and buffers (running statistics) are restored afterwards.
    Returns a :class:`GradcheckReport`.
    """
    x = np.array(x, copy=True)
    _require_float64("the input", x)
    for name, p in layer.params.items():
        _require_float64(f"parameter {name!r}", p)
    rngs = [(g, g.bit_generator.state) for g in layer.generators()]
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
    checks = [_as_check("input", dx, _numeric_grad(x, run, eps))]
    if params:
        for name, p in layer.params.items():
            checks.append(_as_check(name, grads[name], _numeric_grad(p, run, eps)))
    for lay in layer.modules():
        for k, v in buffers[id(lay)].items():
            lay.buffers[k][...] = v
    return GradcheckReport(repr(layer), checks, rtol, atol)


def check_loss(loss, pred, target, eps=1e-6, rtol=RTOL, atol=ATOL):
    """Compare ``loss.backward()`` with central differences of ``loss.forward(pred, target)``."""
    pred = np.array(pred, copy=True)
    _require_float64("pred", pred)
    loss.forward(pred, target)
    analytic = loss.backward()

    def run():
        return np.float64(loss.forward(pred, target))

    run.weights = 1.0
    return GradcheckReport(repr(loss), [_as_check("pred", analytic, _numeric_grad(pred, run, eps))], rtol, atol)
