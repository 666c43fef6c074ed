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

    def _rows(self, x):
        """(N, C, *) -> (C, M) with one row per channel: a free view when the memory is
        channel-major (as Conv2D and BatchNorm2D outputs are), else one copy."""
        return np.moveaxis(x, 1, 0).reshape(self.num_features, -1)

    def _unrows(self, rows, shape):
        """(C, M) -> (N, C, *) view of the same channel-major memory."""
        return np.moveaxis(rows.reshape((shape[1], shape[0]) + shape[2:]), 0, 1)

    def forward(self, x):
        self._check_input(x, (self.num_features,) + (None,) * self._spatial_dims)
        dt = x.dtype.type
        weight = self.params["weight"].astype(x.dtype)[:, None]
        bias = self.params["bias"].astype(x.dtype)[:, None]
        rows = self._rows(x)
        if not self.training:
            self._save_for_backward()  # eval mode: drops any earlier cache
            scale = weight / np.sqrt(self.buffers["running_var"].astype(x.dtype)[:, None] + dt(self.eps))
            shift = bias - self.buffers["running_mean"].astype(x.dtype)[:, None] * scale
            out = rows * scale
            out += shift
            return self._unrows(out, x.shape)
        n = rows.shape[1]
        if n < 2:
            raise ValueError(f"{type(self).__name__}: training needs more than one value per "
                             f"channel, got input of shape {x.shape}")
        mean = rows.mean(axis=1)
        xhat = rows - mean[:, None]
        var = np.einsum("ij,ij->i", xhat, xhat) / dt(n)
        inv_std = 1 / np.sqrt(var + dt(self.eps))
        xhat *= inv_std[:, None]
        out = xhat * weight
        out += bias
        m = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm[...] = (1 - m) * rm + m * mean
        rv[...] = (1 - m) * rv + m * var * (n / (n - 1))
        self._save_for_backward(xhat, inv_std, x.shape)
        return self._unrows(out, x.shape)

    def backward(self, dout):
        xhat, inv_std, shape = self._saved()
        self._check_dout(dout, shape)
        drows = self._rows(dout)
        n = xhat.shape[1]
        dbias = drows.sum(axis=1)
        dweight = np.einsum("ij,ij->i", drows, xhat)
        # dx = gamma * inv_std / n * (n * dout - sum(dout) - xhat * sum(dout * xhat))
        scale = self.params["weight"].astype(xhat.dtype) * inv_std
        dx = drows * scale[:, None]
        dx -= xhat * (scale * dweight / n)[:, None]
        dx -= (scale * dbias / n)[:, None]
        return self._unrows(dx, shape), {"weight": dweight, "bias": dbias}


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
