"""Element-wise activations and softmax. Each keeps the input's shape and dtype.

Shape:
    x:   (N, *)
    out: (N, *), same as x
"""
import math

import numpy as np
from scipy.special import expit

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
        self._check_dout(dout, positive.shape)
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
        self._check_dout(dout, positive.shape)
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
        self._check_dout(dout, out.shape)
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
        self._check_dout(dout, out.shape)
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
        self._check_dout(dout, out.shape)
        return out * (dout - (dout * out).sum(axis=self.axis, keepdims=True)), {}
