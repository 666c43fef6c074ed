"""Batch normalisation over the batch (and spatial) axes, PyTorch's conventions.

Training mode normalises with the batch mean and biased variance and updates the
running statistics with ``running = (1 - momentum) * running + momentum * batch``
(the running variance uses the unbiased batch variance). Eval mode uses the
running statistics and caches nothing.
"""
import math

import numpy as np

from .base import Layer


class _BatchNorm(Layer):
    _spatial_dims = 0

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got {num_features}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum}")
        if float(eps) <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be positive, got {eps}")
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        c = self.num_features
        self.params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
        self.buffers = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}

    def get_config(self):
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, input_shape):
        if len(input_shape) != 1 + self._spatial_dims or input_shape[0] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected per-sample shape "
                             f"({self.num_features}{', *' * self._spatial_dims}), got {tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        """Training mode: about 7 operations per element forward (statistics, normalise,
        scale) and 8 backward; the normalised input is cached."""
        n = math.prod(input_shape)
        return {"forward_flops": 7 * n, "backward_flops": 8 * n, "cache_bytes": 4 * n}

    def _per_channel(self, v):
        """(C,) -> broadcastable against the input, channel on axis 1."""
        return v.reshape((1, -1) + (1,) * self._spatial_dims)

    def forward(self, x):
        self._check_input(x, (self.num_features,) + (None,) * self._spatial_dims)
        axes = (0,) + tuple(range(2, x.ndim))
        dt = x.dtype.type
        if not self.training:
            self._save_for_backward()  # eval mode: drops any earlier cache
            scale = self.params["weight"] / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = self.params["bias"] - self.buffers["running_mean"] * scale
            return x * self._per_channel(scale.astype(x.dtype)) + self._per_channel(shift.astype(x.dtype))
        n = x.size // self.num_features
        if n < 2:
            raise ValueError(f"{type(self).__name__}: training needs more than one value per "
                             f"channel, got input of shape {x.shape}")
        mean = x.mean(axis=axes)
        xc = x - self._per_channel(mean)
        var = np.mean(xc * xc, axis=axes)
        inv_std = (1 / np.sqrt(var + dt(self.eps))).astype(x.dtype)
        xhat = xc * self._per_channel(inv_std)
        out = xhat * self._per_channel(self.params["weight"].astype(x.dtype)) \
            + self._per_channel(self.params["bias"].astype(x.dtype))
        m = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm[...] = (1 - m) * rm + m * mean
        rv[...] = (1 - m) * rv + m * var * (n / (n - 1))
        self._save_for_backward(xhat, inv_std)
        return out

    def backward(self, dout):
        xhat, inv_std = self._saved()
        self._check_dout(dout, xhat.shape)
        axes = (0,) + tuple(range(2, xhat.ndim))
        n = xhat.size // self.num_features
        dbias = dout.sum(axis=axes)
        dweight = (dout * xhat).sum(axis=axes)
        # dx = gamma * inv_std / n * (n * dout - sum(dout) - xhat * sum(dout * xhat))
        scale = self.params["weight"].astype(xhat.dtype) * inv_std
        dx = (dout - self._per_channel(dbias / n) - xhat * self._per_channel(dweight / n)) \
            * self._per_channel(scale)
        return dx, {"weight": dweight, "bias": dbias}


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of features.

    Shape:
        x, out:       (N, num_features)
        weight, bias: (num_features,)
        running_mean, running_var (buffers): (num_features,)
    """


class BatchNorm2D(_BatchNorm):
    """Per-channel batch normalisation of images (statistics over N, H, W).

    Shape:
        x, out:       (N, num_features, H, W)
        weight, bias: (num_features,)
        running_mean, running_var (buffers): (num_features,)
    """
    _spatial_dims = 2
