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
    # None: statistics of this process's batch. Data-parallel training may set an object
    # whose statistics(rows) -> (mean, var, count) and gradient_sums(dbias, dweight, n)
    # -> (sum_dout, sum_dout_xhat) cover the global batch (distributed.sync_batchnorm)
    sync = None

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
        if self.sync is not None:  # every rank takes part, one with an empty batch too
            mean, var, n = self.sync.statistics(rows)
            xhat = rows - mean[:, None]
        elif n == 0:  # an empty batch: an empty result, the running statistics untouched (as PyTorch)
            self._save_for_backward(None, None, x.shape, order, False)
            return np.empty_like(x)
        elif n < 2:
            raise ValueError(f"{type(self).__name__}: training needs more than one value per "
                             f"channel, got input of shape {x.shape}")
        else:
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
        dout = self._check_dout(dout, shape)
        if xhat is None or xhat.shape[1] == 0:  # an empty batch (einsum may not zero an empty float16 sum)
            if self.sync is not None and batch_stats:  # the other ranks wait for this one's (zero) sums
                self.sync.gradient_sums(*[np.zeros(self.num_features, dout.dtype)] * 2, 0)
            return np.zeros_like(dout), {k: np.zeros(p.shape, dout.dtype) for k, p in self.params.items()}
        drows = self._rows(dout, order)
        n = xhat.shape[1]
        dbias = drows.sum(axis=1)
        dweight = np.einsum("ij,ij->i", drows, xhat)
        if not batch_stats:  # eval mode: the statistics are constants
            dx = drows * (self.params["weight"].astype(xhat.dtype) * inv_std)[:, None]
            return self._unrows(dx, shape, order), {"weight": dweight, "bias": dbias}
        # dx = gamma * inv_std / n * (n * dout - sum(dout) - xhat * sum(dout * xhat))
        sum_dout, sum_dout_xhat = (dbias, dweight) if self.sync is None else \
            self.sync.gradient_sums(dbias, dweight, n)
        scale = self.params["weight"].astype(xhat.dtype) * inv_std
        dx = drows * scale[:, None]
        dx -= xhat * (scale * sum_dout_xhat / max(n, 1))[:, None]
        dx -= (scale * sum_dout / max(n, 1))[:, None]
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


def _normalize_rows(rows, eps):
    """Normalise each row of ``rows`` (M, K) to zero mean and unit (biased) variance
    -> ``(xhat, inv_std)``, inv_std of shape (M, 1)."""
    mean = rows.mean(axis=1, keepdims=True)
    xhat = rows - mean
    var = np.einsum("ij,ij->i", xhat, xhat)[:, None] / rows.dtype.type(rows.shape[1])
    inv_std = 1 / np.sqrt(var + rows.dtype.type(eps))
    xhat *= inv_std
    return xhat, inv_std


def _normalize_rows_backward(dxhat, xhat, inv_std):
    """Input gradient of :func:`_normalize_rows` given ``dxhat`` = d loss / d xhat:
    ``dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`` per row."""
    k = dxhat.dtype.type(xhat.shape[1])
    proj = np.einsum("ij,ij->i", dxhat, xhat)[:, None] / k
    return inv_std * (dxhat - dxhat.sum(axis=1, keepdims=True) / k - xhat * proj)


class LayerNorm(Layer):
    """Normalise each sample over its last ``len(normalized_shape)`` axes (mean 0, biased
    variance 1), then scale and shift element-wise (PyTorch's ``nn.LayerNorm``). The same in
    training and eval mode; there are no running statistics.

    Shape:
        x, out:       (N, *, *normalized_shape)
        weight, bias: normalized_shape (only with ``elementwise_affine``; bias only with ``bias``)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        dims = (normalized_shape,) if np.isscalar(normalized_shape) else tuple(normalized_shape)
        if not dims:
            raise ValueError("LayerNorm: normalized_shape must name at least one axis")
        self.normalized_shape = tuple(check_size("LayerNorm", "normalized_shape", d) for d in dims)
        self.eps = check_float("LayerNorm", "eps", eps, low=0.0, low_open=True)
        self.elementwise_affine, self.use_bias = bool(elementwise_affine), bool(bias)
        if self.elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, np.float32)
            if self.use_bias:
                self.params["bias"] = np.zeros(self.normalized_shape, np.float32)

    def get_config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.use_bias}

    def output_shape(self, input_shape):
        k = len(self.normalized_shape)
        if tuple(input_shape[len(input_shape) - k:]) != self.normalized_shape or len(input_shape) < k:
            raise ValueError(f"LayerNorm: expected per-sample shape (*, {', '.join(map(str, self.normalized_shape))}), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        """About 7 operations per element forward, 8 backward; the normalised input is cached."""
        n = math.prod(input_shape)
        return {"forward_flops": 7 * n, "backward_flops": 8 * n, "cache_bytes": 4 * n}

    def forward(self, x):
        self._check_input(x)
        k = len(self.normalized_shape)
        if x.ndim < k + 1 or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input of shape (N, *, {', '.join(map(str, self.normalized_shape))}), "
                             f"got {x.shape}")
        # (N, *, *normalized_shape) -> (M, prod(normalized_shape)), one row per normalised group
        xhat, inv_std = _normalize_rows(x.reshape(-1, math.prod(self.normalized_shape)), self.eps)
        xhat = xhat.reshape(x.shape)
        self._save_for_backward(xhat, inv_std)
        if not self.elementwise_affine:
            return xhat.copy()
        out = xhat * self.params["weight"].astype(x.dtype, copy=False)
        if self.use_bias:
            out += self.params["bias"].astype(x.dtype, copy=False)
        return out

    def backward(self, dout):
        xhat, inv_std = self._saved()
        dout = self._check_dout(dout, xhat.shape)
        batch_axes = tuple(range(xhat.ndim - len(self.normalized_shape)))
        grads = {}
        dxhat = dout
        if self.elementwise_affine:
            grads["weight"] = (dout * xhat).sum(axis=batch_axes)
            if self.use_bias:
                grads["bias"] = dout.sum(axis=batch_axes)
            dxhat = dout * self.params["weight"].astype(dout.dtype, copy=False)
        rows = dxhat.reshape(-1, math.prod(self.normalized_shape))
        dx = _normalize_rows_backward(rows, xhat.reshape(rows.shape), inv_std)
        return dx.reshape(xhat.shape), grads


class GroupNorm(Layer):
    """Normalise each sample over groups of channels (mean 0, biased variance 1 over a group's
    channels and all their positions), then scale and shift per channel (PyTorch's
    ``nn.GroupNorm``). Independent of the batch size and the same in training and eval mode.
    ``num_groups == 1`` normalises whole samples; ``num_groups == num_channels`` is instance
    normalisation (see :class:`InstanceNorm2D`).

    Shape:
        x, out:       (N, num_channels, *)
        weight, bias: (num_channels,) (only with ``affine``)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        name = type(self).__name__
        self.num_groups = check_size(name, "num_groups", num_groups)
        self.num_channels = check_size(name, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"{name}: num_channels ({self.num_channels}) must be divisible by "
                             f"num_groups ({self.num_groups})")
        self.eps = check_float(name, "eps", eps, low=0.0, low_open=True)
        self.affine = bool(affine)
        if self.affine:
            self.params["weight"] = np.ones(self.num_channels, np.float32)
            self.params["bias"] = np.zeros(self.num_channels, np.float32)

    def get_config(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine}

    def output_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[0] != self.num_channels:
            raise ValueError(f"{type(self).__name__}: expected per-sample shape ({self.num_channels}, *), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def cost(self, input_shape):
        """About 7 operations per element forward, 8 backward; the normalised input is cached."""
        n = math.prod(input_shape)
        return {"forward_flops": 7 * n, "backward_flops": 8 * n, "cache_bytes": 4 * n}

    def _channel(self, values, ndim):
        """(C,) -> (1, C, 1, ...) to broadcast over (N, C, *)."""
        return values.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, {self.num_channels}, *), "
                             f"got {x.shape}")
        # one row per group of one sample
        xhat, inv_std = _normalize_rows(x.reshape(self._group_rows(x.shape)), self.eps)
        xhat = xhat.reshape(x.shape)
        self._save_for_backward(xhat, inv_std)
        if not self.affine:
            return xhat.copy()
        out = xhat * self._channel(self.params["weight"].astype(x.dtype, copy=False), x.ndim)
        out += self._channel(self.params["bias"].astype(x.dtype, copy=False), x.ndim)
        return out

    def backward(self, dout):
        xhat, inv_std = self._saved()
        dout = self._check_dout(dout, xhat.shape)
        grads = {}
        dxhat = dout
        if self.affine:
            axes = (0,) + tuple(range(2, dout.ndim))
            grads["weight"] = (dout * xhat).sum(axis=axes)
            grads["bias"] = dout.sum(axis=axes)
            dxhat = dout * self._channel(self.params["weight"].astype(dout.dtype, copy=False), dout.ndim)
        rows = dxhat.reshape(self._group_rows(dout.shape))
        dx = _normalize_rows_backward(rows, xhat.reshape(rows.shape), inv_std)
        return dx.reshape(xhat.shape), grads

    def _group_rows(self, shape):
        """(N, C, *) -> (N * G, C / G * prod(*)), explicit so that an empty batch reshapes too."""
        return (shape[0] * self.num_groups, math.prod(shape[1:]) // self.num_groups)


class InstanceNorm2D(GroupNorm):
    """Normalise each channel of each image over its positions (PyTorch's ``nn.InstanceNorm2d``
    without running statistics): :class:`GroupNorm` with one group per channel. Like PyTorch's,
    the affine scale and shift are off by default.

    Shape:
        x, out:       (N, num_features, H, W)
        weight, bias: (num_features,) (only with ``affine``)
    """

    def __init__(self, num_features, eps=1e-5, affine=False):
        num_features = check_size("InstanceNorm2D", "num_features", num_features)
        super().__init__(num_features, num_features, eps=eps, affine=affine)

    def get_config(self):
        return {"num_features": self.num_channels, "eps": self.eps, "affine": self.affine}

    def output_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[0] != self.num_channels:
            raise ValueError(f"InstanceNorm2D: expected per-sample shape ({self.num_channels}, H, W), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x):
        self._check_input(x, (self.num_channels, None, None))
        return super().forward(x)
