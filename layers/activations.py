"""Element-wise activations and softmax. Each keeps the input's shape and dtype.

Shape:
    x:   (N, *)
    out: (N, *), same as x
"""
import math

import numpy as np
from scipy.special import erf, expit

from .base import Layer
from .validation import check_float, check_size


class ReLU(Layer):
    """``out = max(x, 0)``; the gradient is zero where ``x <= 0``."""

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": n, "backward_flops": n, "cache_bytes": n}  # a boolean mask

    def forward(self, x):
        self._check_input(x)
        out = np.maximum(x, 0)
        self._save_for_backward(out > 0)
        return out

    def backward(self, dout):
        (positive,) = self._saved()
        dout = self._check_dout(dout, positive.shape)
        return dout * positive, {}

    def active_mask(self):
        """Where the last forward was positive (None after a forward under ``no_grad``)."""
        return None if self._cache is None else self._cache[0]


class LeakyReLU(Layer):
    """``out = x`` where ``x > 0`` else ``negative_slope * x``."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def forward(self, x):
        self._check_input(x)
        positive = x > 0
        slope = x.dtype.type(self.negative_slope)
        out = np.where(positive, x, x * slope)
        self._save_for_backward(positive)
        return out

    def backward(self, dout):
        (positive,) = self._saved()
        dout = self._check_dout(dout, positive.shape)
        return np.where(positive, dout, dout * dout.dtype.type(self.negative_slope)), {}


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``, evaluated without overflow for any ``x``."""

    def forward(self, x):
        self._check_input(x)
        out = expit(x).astype(x.dtype, copy=False)  # scipy gives float16 in float32 or float64
        self._save_for_backward(out)
        return out

    def backward(self, dout):
        (out,) = self._saved()
        dout = self._check_dout(dout, out.shape)
        return dout * out * (1 - out), {}


class Tanh(Layer):
    """``out = tanh(x)``; ``d out / dx = 1 - out**2``."""

    def forward(self, x):
        self._check_input(x)
        out = np.tanh(x)
        self._save_for_backward(out)
        return out

    def backward(self, dout):
        (out,) = self._saved()
        dout = self._check_dout(dout, out.shape)
        return dout * (1 - out * out), {}


def softmax(x, axis=-1):
    """Numerically stable softmax along ``axis`` (max subtracted before exp)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


class Softmax(Layer):
    """Softmax along ``axis`` (default: the last).

    Backward uses the Jacobian-vector product
    ``dx = out * (dout - sum(dout * out, axis))``.
    """

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = check_size("Softmax", "axis", axis, minimum=None)

    def get_config(self):
        return {"axis": self.axis}

    def forward(self, x):
        self._check_input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} out of range for input of shape {x.shape}")
        out = softmax(x, self.axis)
        self._save_for_backward(out)
        return out

    def backward(self, dout):
        (out,) = self._saved()
        dout = self._check_dout(dout, out.shape)
        return out * (dout - (dout * out).sum(axis=self.axis, keepdims=True)), {}


def _expit(x):
    """sigmoid in ``x``'s dtype (scipy computes float16 in float32 or float64)."""
    return expit(x).astype(x.dtype, copy=False)


def _erf(x):
    return erf(x).astype(x.dtype, copy=False)


def _sum_except(value, axis):
    """Sum over every axis but ``axis`` (a parameter's gradient from a broadcast product)."""
    return value.sum(axis=tuple(a for a in range(value.ndim) if a != axis))


class ELU(Layer):
    """``out = x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (PyTorch's ``nn.ELU``).

    d out / dx is 1 where ``x > 0``, else ``out + alpha``.

    Shape:
        x, out: (N, *)
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_float("ELU", "alpha", alpha)

    def get_config(self):
        return {"alpha": self.alpha}

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 3 * n, "backward_flops": 2 * n, "cache_bytes": 5 * n}

    def forward(self, x):
        self._check_input(x)
        positive = x > 0
        alpha = x.dtype.type(self.alpha)
        out = np.where(positive, x, alpha * np.expm1(np.minimum(x, 0)))
        self._save_for_backward(positive, out)
        return out

    def backward(self, dout):
        positive, out = self._saved()
        dout = self._check_dout(dout, out.shape)
        return dout * np.where(positive, 1, out + out.dtype.type(self.alpha)), {}


class GELU(Layer):
    """Gaussian error linear unit, ``out = x * Phi(x)`` (PyTorch's ``nn.GELU``).

    ``approximate="none"``: Phi is the standard normal CDF, ``0.5 * (1 + erf(x / sqrt(2)))``,
    and d out / dx = Phi(x) + x * phi(x). ``approximate="tanh"``:
    ``out = 0.5 * x * (1 + tanh(u))`` with ``u = sqrt(2 / pi) * (x + 0.044715 * x**3)``.

    Shape:
        x, out: (N, *)
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def get_config(self):
        return {"approximate": self.approximate}

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 8 * n, "backward_flops": 8 * n, "cache_bytes": 4 * n}

    def forward(self, x):
        self._check_input(x)
        self._save_for_backward(x)
        half = x.dtype.type(0.5)
        if self.approximate == "tanh":
            u = x.dtype.type(math.sqrt(2 / math.pi)) * (x + x.dtype.type(0.044715) * x ** 3)
            return half * x * (1 + np.tanh(u))
        return half * x * (1 + _erf(x * x.dtype.type(1 / math.sqrt(2))))

    def backward(self, dout):
        (x,) = self._saved()
        dout = self._check_dout(dout, x.shape)
        t = x.dtype.type
        if self.approximate == "tanh":
            k = t(math.sqrt(2 / math.pi))
            th = np.tanh(k * (x + t(0.044715) * x ** 3))
            grad = t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * k * (1 + t(3 * 0.044715) * x * x)
        else:
            cdf = t(0.5) * (1 + _erf(x * t(1 / math.sqrt(2))))
            grad = cdf + x * np.exp(t(-0.5) * x * x) * t(1 / math.sqrt(2 * math.pi))
        return dout * grad, {}


class Softplus(Layer):
    """``out = log(1 + exp(beta * x)) / beta``, linear (``out = x``) where ``beta * x > threshold``
    (PyTorch's ``nn.Softplus``). Evaluated as ``max(z, 0) + log1p(exp(-|z|))``, ``z = beta * x``,
    so no ``x`` overflows; d out / dx = sigmoid(beta * x).

    Shape:
        x, out: (N, *)
    """

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = check_float("Softplus", "beta", beta, low=0.0, low_open=True)
        self.threshold = check_float("Softplus", "threshold", threshold)

    def get_config(self):
        return {"beta": self.beta, "threshold": self.threshold}

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 6 * n, "backward_flops": 4 * n, "cache_bytes": 4 * n}

    def forward(self, x):
        self._check_input(x)
        self._save_for_backward(x)
        z = x * x.dtype.type(self.beta)
        soft = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / x.dtype.type(self.beta)
        return np.where(z > self.threshold, x, soft)

    def backward(self, dout):
        (x,) = self._saved()
        dout = self._check_dout(dout, x.shape)
        z = x * x.dtype.type(self.beta)
        return dout * np.where(z > self.threshold, 1, _expit(z)), {}


class PReLU(Layer):
    """``out = x`` where ``x > 0``, else ``weight * x``, with a learnable slope (PyTorch's
    ``nn.PReLU``): one shared slope (``num_parameters=1``) or one per channel (axis 1).

    Shape:
        x, out: (N, *) with one slope; (N, num_parameters, *) with one per channel
        weight: (num_parameters,), every entry ``init`` at construction
    """

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_slopes = check_size("PReLU", "num_parameters", num_parameters)
        self.init = check_float("PReLU", "init", init)
        # stored as num_slopes: Layer.num_parameters() counts the trainable values
        self.params["weight"] = np.full(self.num_slopes, self.init, dtype=np.float32)

    def get_config(self):
        return {"num_parameters": self.num_slopes, "init": self.init}

    def output_shape(self, input_shape):
        if self.num_slopes > 1 and (len(input_shape) < 1 or input_shape[0] != self.num_slopes):
            raise ValueError(f"PReLU: expected per-sample shape ({self.num_slopes}, *), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 2 * n, "backward_flops": 4 * n, "cache_bytes": 5 * n}

    def _slope(self, x):
        """(C,) -> (1, C, 1, ...), or the single slope as a (1,)-shaped array."""
        weight = self.params["weight"].astype(x.dtype, copy=False)
        if self.num_slopes == 1:
            return weight
        return weight.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, x):
        self._check_input(x)
        if self.num_slopes > 1 and (x.ndim < 2 or x.shape[1] != self.num_slopes):
            raise ValueError(f"PReLU: expected input of shape (N, {self.num_slopes}, *), got {x.shape}")
        positive = x > 0
        self._save_for_backward(x, positive)
        return np.where(positive, x, x * self._slope(x))

    def backward(self, dout):
        x, positive = self._saved()
        dout = self._check_dout(dout, x.shape)
        negative_part = np.where(positive, 0, dout * x)
        if self.num_slopes == 1:
            dweight = negative_part.sum().reshape(1)
        else:
            dweight = _sum_except(negative_part, 1)
        return np.where(positive, dout, dout * self._slope(x)), {"weight": dweight}


class Hardswish(Layer):
    """``out = x * min(max(x + 3, 0), 6) / 6`` (PyTorch's ``nn.Hardswish``).

    d out / dx is 0 for ``x <= -3``, ``x / 3 + 1 / 2`` for ``-3 < x < 3`` and 1 for
    ``x >= 3``: at the kinks the values of the flat sides, as PyTorch gives them.

    Shape:
        x, out: (N, *)
    """

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 4 * n, "backward_flops": 4 * n, "cache_bytes": 4 * n}

    def forward(self, x):
        self._check_input(x)
        self._save_for_backward(x)
        t = x.dtype.type
        return x * np.clip(x + t(3), t(0), t(6)) / t(6)

    def backward(self, dout):
        (x,) = self._saved()
        dout = self._check_dout(dout, x.shape)
        t = x.dtype.type
        grad = np.where(x <= -3, t(0), np.where(x < 3, x / t(3) + t(0.5), t(1)))
        return dout * grad, {}


class SiLU(Layer):
    """Sigmoid-weighted linear unit (swish), ``out = x * sigmoid(x)`` (PyTorch's ``nn.SiLU``);
    d out / dx = s * (1 + x * (1 - s)) with s = sigmoid(x).

    Shape:
        x, out: (N, *)
    """

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 5 * n, "backward_flops": 5 * n, "cache_bytes": 8 * n}

    def forward(self, x):
        self._check_input(x)
        s = _expit(x)
        self._save_for_backward(x, s)
        return x * s

    def backward(self, dout):
        x, s = self._saved()
        dout = self._check_dout(dout, x.shape)
        return dout * (s * (1 + x * (1 - s))), {}


class LogSoftmax(Layer):
    """``out = x - logsumexp(x, axis)`` along ``axis`` (default: the last), stable for any
    magnitude; pair it with :class:`layers.NLLLoss`. ``dx = dout - softmax(x) * sum(dout, axis)``.

    Shape:
        x, out: (N, *), same shape
    """

    def __init__(self, axis=-1):
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"LogSoftmax: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def output_shape(self, input_shape):
        if not -len(input_shape) - 1 <= self.axis <= len(input_shape):
            raise ValueError(f"LogSoftmax: axis {self.axis} out of range for per-sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": 5 * n, "backward_flops": 4 * n, "cache_bytes": 4 * n}

    def forward(self, x):
        self._check_input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"LogSoftmax: axis {self.axis} out of range for input of shape {x.shape}")
        shifted = x - x.max(axis=self.axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=self.axis, keepdims=True))
        self._save_for_backward(out)
        return out

    def backward(self, dout):
        (out,) = self._saved()
        dout = self._check_dout(dout, out.shape)
        return dout - np.exp(out) * dout.sum(axis=self.axis, keepdims=True), {}
