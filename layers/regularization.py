"""Regularisation layers."""
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

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_float("Dropout", "p", p, 0.0, 1.0, high_open=True)
        self.rng = make_rng(rng)

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
        self._check_dout(dout, shape)
        if mask is None:
            return dout.copy(), {}
        return dout * mask, {}
