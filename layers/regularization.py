"""Regularisation layers."""
import math

import numpy as np

from .base import Layer
from .init import make_rng
from .validation import check_float


class Dropout(Layer):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    In eval mode (and with ``p=0``) it is the identity, forward and backward, so no
    rescaling is needed at test time.

    Shape:
        x:   (N, *)
        out: (N, *), same as x
    """

    init_only = ("rng",)  # the masks' generator: a loaded layer gets a fresh one

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_float("Dropout", "p", p, 0.0, 1.0, high_open=True)
        self.rng = make_rng(rng, type(self).__name__)

    def get_config(self):
        return {"p": self.p}

    def forward(self, x):
        self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save_for_backward(x.shape, None)
            return x.copy()
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        self._save_for_backward(x.shape, mask)
        return x * mask

    def backward(self, dout):
        shape, mask = self._saved()
        dout = self._check_dout(dout, shape)
        if mask is None:
            return dout.copy(), {}
        return dout * mask, {}


class Dropout2D(Layer):
    """Channel dropout: zero each whole channel of each sample with probability ``p`` and scale
    the kept ones by ``1/(1-p)`` (PyTorch's ``nn.Dropout2d``), for convolutional features whose
    neighbouring pixels are correlated. The identity in eval mode.

    Shape:
        x, out: (N, C, H, W)
        mask:   (N, C, 1, 1), drawn from ``rng`` per forward in training mode
    """

    init_only = ("rng",)  # the masks' generator: a loaded layer gets a fresh one

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_float("Dropout2D", "p", p, low=0.0, high=1.0, high_open=True)
        self.rng = make_rng(rng, type(self).__name__)

    def get_config(self):
        return {"p": self.p}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Dropout2D: expected per-sample shape (C, H, W), got {tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": n, "backward_flops": n, "cache_bytes": 4 * input_shape[0]}

    def forward(self, x):
        self._check_input(x, ndim=4)
        if not self.training or self.p == 0.0:
            self._save_for_backward(x.shape, None)
            return x.copy()
        keep = self.rng.random(x.shape[:2] + (1, 1), dtype=np.float32) >= self.p
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        self._save_for_backward(x.shape, mask)
        return x * mask

    def backward(self, dout):
        shape, mask = self._saved()
        dout = self._check_dout(dout, shape)
        return (dout.copy() if mask is None else dout * mask), {}
