"""Writing your own layers: a Swish activation, a PReLU with a learnable slope per
channel, and a gated linear unit built from the Multiply container.

Run it to gradient-check all three:  python examples/custom_layers.py
"""
import os
import sys

import numpy as np
from scipy.special import expit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from layers import Dense, Layer, Sigmoid  # noqa: E402
from layers.gradcheck import check_layer  # noqa: E402
from layers.init import make_rng  # noqa: E402
from models import Multiply, Sequential  # noqa: E402


class Swish(Layer):
    """``out = x * sigmoid(x)``.

    d out / dx = s + x * s * (1 - s) with s = sigmoid(x).

    Shape:
        x, out: (N, *)
    """

    def forward(self, x):
        self._check_input(x)
        s = expit(x).astype(x.dtype, copy=False)  # keep float16/32 as they are
        self._save_for_backward(x, s)
        return x * s

    def backward(self, dout):
        x, s = self._saved()
        dout = self._check_dout(dout, x.shape)
        return dout * (s + x * s * (1 - s)), {}


class PReLU(Layer):
    """``out = x`` where ``x > 0``, else ``weight[c] * x``; one learnable slope per channel.

    Shape:
        x, out: (N, num_channels, *)
        weight: (num_channels,)
    """

    def __init__(self, num_channels, init=0.25):
        super().__init__()
        self.num_channels, self.init = int(num_channels), float(init)
        self.params["weight"] = np.full(self.num_channels, self.init, dtype=np.float32)

    def get_config(self):
        return {"num_channels": self.num_channels, "init": self.init}

    def _slope(self, x):
        # (C,) -> (1, C, 1, ...) to broadcast over the batch and any spatial axes
        return self.params["weight"].astype(x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"PReLU: expected input of shape (N, {self.num_channels}, ...), got {x.shape}")
        positive = x > 0
        self._save_for_backward(x, positive)
        return np.where(positive, x, x * self._slope(x))

    def backward(self, dout):
        x, positive = self._saved()
        dout = self._check_dout(dout, x.shape)
        axes = (0,) + tuple(range(2, x.ndim))
        dweight = np.where(positive, 0, dout * x).sum(axis=axes)
        return np.where(positive, dout, dout * self._slope(x)), {"weight": dweight}


def gated_linear_unit(in_features, out_features, rng=None):
    """GLU: ``(x W + b) * sigmoid(x V + c)``, a product gate between two branches."""
    rng = make_rng(rng)  # one generator for both branches, even from an integer seed
    return Multiply(Dense(in_features, out_features, init="glorot_uniform", rng=rng),
                    Sequential(Dense(in_features, out_features, init="glorot_uniform", rng=rng), Sigmoid()))


def main():
    rng = np.random.default_rng(0)
    checks = [(Swish(), (4, 5)), (PReLU(3), (2, 3, 4, 4)), (gated_linear_unit(6, 4, rng), (3, 6))]
    for layer, shape in checks:
        x = rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
        report = check_layer(layer.astype(np.float64), x)
        print(report)
        print("passed" if report.passed() else "FAILED", "\n")


if __name__ == "__main__":
    main()
