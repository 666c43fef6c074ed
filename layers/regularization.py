"""Regularisation layers."""
import numpy as np

from .base import Layer
from .init import make_rng


class Dropout(Layer):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    In eval mode it is the identity, so no rescaling is needed at test time.

    Shape:
        x:   (N, *)
        out: (N, *), same as x
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = make_rng(rng)

    def get_config(self):
        return {"p": self.p}

    def forward(self, x):
        self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save_for_backward(None)
            return x.copy()
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        self._save_for_backward(mask)
        return x * mask

    def backward(self, dout):
        (mask,) = self._saved()
        if mask is None:
            return dout, {}
        self._check_dout(dout, mask.shape)
        return dout * mask, {}
