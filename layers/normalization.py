"""Batch normalisation over the batch (and spatial) axes, PyTorch's conventions.

Training mode normalises with the batch mean and biased variance and updates the
running statistics with ``running = (1 - momentum) * running + momentum * batch``
(the running variance uses the unbiased batch variance). Eval mode uses the
running statistics, an affine map whose backward treats them as constants (as
PyTorch's eval mode does).
"""
import math

import numpy as np

from .base import Layer
from .init import ones, zeros
from .validation import check_float, check_size


class _BatchNorm(Layer):
    _spatial_dims = (0,)  # how many axes may follow the channel axis

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_size(name, "num_features", num_features)
        self.momentum = check_float(name, "momentum", momentum, 0.0, 1.0)
        self.eps = check_float(name, "eps", eps, 0.0, low_open=True)
        c = self.num_features
        self.params = {"weight": ones(c), "bias": zeros(c)}
        self.buffers = {"running_mean": zeros(c), "running_var": ones(c)}

    def get_config(self):
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, input_shape):
        if len(input_shape) - 1 not in self._spatial_dims or input_shape[0] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected per-sample shape {self._expected(False)}, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def _expected(self, batch=True):
        """The accepted shapes as text, e.g. '(N, 3) or (N, 3, L)'."""
        lead = "N, " if batch else ""
        axes = {0: "", 1: ", L", 2: ", H, W"}
        return " or ".join(f"({lead}{self.num_features}{axes[k]})" for k in self._spatial_dims)

    def cost(self, input_shape):
        """Training mode: about 7 operations per element forward (statistics, normalise,
        scale) and 8 backward; the normalised input is cached."""
        n = math.prod(input_shape)
        return {"forward_flops": 7 * n, "backward_flops": 8 * n, "cache_bytes": 4 * n}

    @staticmethod
    def _order(x):
        """Channel axis first, then the other axes from the largest stride to the smallest:
        the order in which ``x``'s memory is laid out when the channel axis is outermost."""
        rest = sorted((a for a in range(x.ndim) if a != 1), key=lambda a: -x.strides[a])
        return (1, *rest)

    def _rows(self, x, order):
        """(N, C, *) -> (C, M), one row per channel: a free view when channels are the
        outermost axis of the memory (as Conv2D's (C, H, W, N) outputs are), else a copy."""
        return x.transpose(order).reshape(self.num_features, -1)

    def _unrows(self, rows, shape, order):
        """(C, M) -> (N, C, *) view of the same memory (inverse of :meth:`_rows`)."""
        return rows.reshape(tuple(shape[a] for a in order)).transpose(np.argsort(order))

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.ndim - 2 not in self._spatial_dims:
            raise ValueError(f"{type(self).__name__}: expected input of shape {self._expected()}, "
                             f"got {getattr(x, 'shape', type(x).__name__)}")
        self._check_input(x, (self.num_features,) + (None,) * (x.ndim - 2))
        dt = x.dtype.type
        weight = self.params["weight"].astype(x.dtype)[:, None]
        bias = self.params["bias"].astype(x.dtype)[:, None]
        order = self._order(x)
        rows = self._rows(x, order)
        if not self.training:
            # running statistics: an affine map, whose backward PyTorch's eval mode also uses
            inv_std = 1 / np.sqrt(self.buffers["running_var"].astype(x.dtype) + dt(self.eps))
            xhat = (rows - self.buffers["running_mean"].astype(x.dtype)[:, None]) * inv_std[:, None]
            out = xhat * weight
            out += bias
            self._save_for_backward(xhat, inv_std, x.shape, order, False)
            return self._unrows(out, x.shape, order)
        n = rows.shape[1]
        if n == 0:  # an empty batch: an empty result, the running statistics untouched (as PyTorch)
            self._save_for_backward(None, None, x.shape, order, False)
            return np.empty_like(x)
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
        self._save_for_backward(xhat, inv_std, x.shape, order, True)
        return self._unrows(out, x.shape, order)

    def backward(self, dout):
        xhat, inv_std, shape, order, batch_stats = self._saved()
        self._check_dout(dout, shape)
        if xhat is None:
            return np.zeros_like(dout), {k: np.zeros(p.shape, dout.dtype) for k, p in self.params.items()}
        drows = self._rows(dout, order)
        n = xhat.shape[1]
        dbias = drows.sum(axis=1)
        dweight = np.einsum("ij,ij->i", drows, xhat)
        if not batch_stats:  # eval mode: the statistics are constants
            dx = drows * (self.params["weight"].astype(xhat.dtype) * inv_std)[:, None]
            return self._unrows(dx, shape, order), {"weight": dweight, "bias": dbias}
        # dx = gamma * inv_std / n * (n * dout - sum(dout) - xhat * sum(dout * xhat))
        scale = self.params["weight"].astype(xhat.dtype) * inv_std
        dx = drows * scale[:, None]
        dx -= xhat * (scale * dweight / n)[:, None]
        dx -= (scale * dbias / n)[:, None]
        return self._unrows(dx, shape, order), {"weight": dweight, "bias": dbias}


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of features (statistics over N, and over L for sequences).

    Shape:
        x, out:       (N, num_features) or (N, num_features, L)
        weight, bias: (num_features,)
        running_mean, running_var (buffers): (num_features,)
    """
    _spatial_dims = (0, 1)


class BatchNorm2D(_BatchNorm):
    """Per-channel batch normalisation of images (statistics over N, H, W).

    Shape:
        x, out:       (N, num_features, H, W)
        weight, bias: (num_features,)
        running_mean, running_var (buffers): (num_features,)
    """
    _spatial_dims = (2,)
