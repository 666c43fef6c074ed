"""Layers that only change the shape of the data."""
import math

import numpy as np

from .base import Layer


class Flatten(Layer):
    """Collapse every axis but the batch axis.

    Shape:
        x:   (N, d1, d2, ...)
        out: (N, d1 * d2 * ...)
    """

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def cost(self, input_shape):
        return {"forward_flops": 0, "backward_flops": 0, "cache_bytes": 0}

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected input of shape (N, ...) with rank >= 2, got {x.shape}")
        self._save_for_backward(x)  # a reference, for its shape and memory layout
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dout):
        (x,) = self._saved()
        dout = self._check_dout(dout, (x.shape[0], math.prod(x.shape[1:])))
        # hand the gradient back in the input's memory layout, so that the layer
        # before reads it in the order it reads its own arrays
        dx = np.empty_like(x, dtype=dout.dtype)
        dx[...] = dout.reshape(x.shape)
        return dx, {}
