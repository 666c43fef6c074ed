"""Fully connected layers."""
import numpy as np

from .base import Layer
from .init import initialize, make_rng, zeros
from .validation import check_size


class Dense(Layer):
    """Affine map ``out = x @ weight.T + bias``.

    Shape:
        x:      (N, in_features)
        out:    (N, out_features)
        weight: (out_features, in_features)
        bias:   (out_features,)
    """

    init_only = ("rng",)  # draws the initial weights, which are saved

    def __init__(self, in_features, out_features, bias=True, init="he_normal", rng=None):
        super().__init__()
        self.in_features = check_size("Dense", "in_features", in_features)
        self.out_features = check_size("Dense", "out_features", out_features)
        self.use_bias, self.init = bool(bias), init
        rng = make_rng(rng, "Dense")
        self.params["weight"] = initialize((self.out_features, self.in_features),
                                           self.in_features, self.out_features, init, rng)
        if self.use_bias:
            self.params["bias"] = zeros(self.out_features)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.use_bias, "init": self.init}

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"Dense: expected per-sample input shape ({self.in_features},), "
                             f"got {tuple(input_shape)}")
        return (self.out_features,)

    def cost(self, input_shape):
        macs = self.in_features * self.out_features
        bias = self.out_features if self.use_bias else 0
        backward = (4 if self.input_grad else 2) * macs + bias
        return {"forward_flops": 2 * macs + bias, "backward_flops": backward,
                "cache_bytes": 4 * self.in_features}

    def forward(self, x):
        self._check_input(x, (self.in_features,))
        out = x @ self.params["weight"].astype(x.dtype, copy=False).T
        if self.use_bias:
            out += self.params["bias"].astype(x.dtype, copy=False)
        self._save_for_backward(x)
        return out

    def backward(self, dout):
        (x,) = self._saved()
        dout = self._check_dout(dout, (x.shape[0], self.out_features))
        grads = {"weight": dout.T @ x}
        if self.use_bias:
            grads["bias"] = dout.sum(axis=0)
        dx = dout @ self.params["weight"].astype(dout.dtype, copy=False) if self.input_grad else None
        return dx, grads
