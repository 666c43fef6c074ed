"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col or by
row unfolding (``layers/conv_rows.py``)."""
import math

import numpy as np

from . import conv_rows
from .base import Layer, grad_enabled
from .im2col import as_padding, as_pair, col2im, empty_chwn, im2col, output_size, pad_nchw
from .init import initialize, make_rng, zeros
from .validation import check_size

DEFAULT_WORKSPACE_BYTES = 256 * 2**20
# under no_grad() nothing is kept for backward (in either mode), so the forward unfolds in
# chunks small enough that the allocator reuses their memory instead of mapping fresh pages
NO_GRAD_CHUNK_BYTES = 16 * 2**20
ALGORITHMS = ("auto", "im2col", "rows")
# "auto" takes the row unfolding for outputs at least 8 pixels wide (each row's product
# is then Wo * N >= 256 columns wide at the usual batch sizes); it computes the input
# gradient by rows (instead of im2col's fold) only for inputs with many channels and at
# least 14x14 pixels, where the fold's kh * kw slice-additions cost more than the narrower
# products. Measured per layer, with 2 BLAS threads and with 1 at half the batch (one MPI
# rank of two), by benchmarks/bench_conv_algorithms.py. The choice depends on the image
# geometry, never on the batch size: the two unfoldings sum each output in another order,
# and a batch split over K ranks must compute the same forward values as one process.
ROWS_MIN_OUTPUT_WIDTH = 8
ROWS_DX_MIN_CHANNELS = 32
ROWS_DX_MIN_PIXELS = 14 * 14


class Conv2D(Layer):
    """Grouped 2-D cross-correlation: unfold -> one matrix product per group -> reshape.

    ``out[n, o] = bias[o] + sum_{c in group(o), i, j} weight[o, c, i, j] *
    x_padded[n, c, s*y + d*i, s*x + d*j]``

    ``groups == in_channels`` is a depthwise convolution (``out_channels`` a
    multiple of it gives a channel multiplier); a 1x1 kernel with stride 1 is a
    plain matrix product with no unfolding.

    Shape:
        x:      (N, in_channels, H, W)
        out:    (N, out_channels, Ho, Wo) with
                Ho = floor((H + pad_top + pad_bottom - dilation_h * (kh - 1) - 1) / stride_h) + 1
                (Wo likewise); ``padding="same"`` keeps H, W (stride 1 only).
        weight: (out_channels, in_channels // groups, kh, kw)
        bias:   (out_channels,)

    The output is an NCHW array backed by batch-innermost ``(C_out, Ho, Wo, N)``
    memory, which is what the matrix product writes; the next layer reads it
    through its strides, so no transpose is ever copied (see ``layers/im2col.py``).

    Two ways to unfold (``algorithm``):

    - ``"im2col"``: the full ``(C_in/groups * kh * kw, Ho * Wo * N)`` matrix, one
      product per group. It is processed in batch chunks no larger than
      ``workspace_bytes``; when the whole batch fits, it is kept for backward (in
      train and eval mode alike), otherwise backward unfolds again chunk by chunk.
    - ``"rows"`` (``groups=1`` and no dilation): the input unfolded along W only,
      ``(Hp, C_in, kw, Wo, N)``, ``kw`` copies of the input instead of ``kh * kw``.
      Every output row y is then one product of the ``(C_out, kh * C_in * kw)``
      weight with a contiguous block of that array (rows ``stride * y .. + kh``),
      so the unfolding writes ``kh`` times less memory. With stride 1 the input
      gradient is computed the same way, from the upstream gradient unfolded along
      W and the flipped weight, with no fold; otherwise by im2col's fold.
    - ``"auto"`` (default) picks ``"rows"`` where it is eligible and faster (outputs at
      least 8 pixels wide), else ``"im2col"``; the image geometry decides, never the
      batch size. A row unfolding larger than ``workspace_bytes`` is done in batch slices.

    Under :func:`layers.no_grad` nothing is kept and the chunks are at most 16 MiB.
    """

    init_only = ("rng",)  # draws the initial weights, which are saved

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, init="he_normal", rng=None,
                 workspace_bytes=DEFAULT_WORKSPACE_BYTES, algorithm="auto"):
        super().__init__()
        name = "Conv2D"
        in_channels = check_size(name, "in_channels", in_channels)
        out_channels = check_size(name, "out_channels", out_channels)
        groups = check_size(name, "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = as_pair(kernel_size, "kernel_size", name)
        self.stride = as_pair(stride, "stride", name)
        self.dilation = as_pair(dilation, "dilation", name)
        self.padding = padding
        if isinstance(padding, str) and padding == "valid":
            self.pads = (0, 0, 0, 0)
        elif isinstance(padding, str) and padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {self.stride}")
            # total padding d*(k-1); the odd element goes after, as in PyTorch
            th, tw = (d * (k - 1) for d, k in zip(self.dilation, self.kernel_size))
            self.pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            self.pads = as_padding(padding, name)
            self.padding = padding if np.isscalar(padding) else list(padding)
        self.use_bias, self.init = bool(bias), init
        self.workspace_bytes = check_size(name, "workspace_bytes", workspace_bytes)
        self._rows_eligible = self.groups == 1 and self.dilation == (1, 1)
        self.algorithm = algorithm
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self.params["weight"] = initialize(
            (self.out_channels, self.in_channels // self.groups, kh, kw), fan_in, fan_out, init, make_rng(rng, "Conv2D"))
        if self.use_bias:
            self.params["bias"] = zeros(self.out_channels)
        self._pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1)
        self._workspace = {}

    @property
    def algorithm(self):
        """``"auto"``, ``"im2col"`` or ``"rows"`` (see the class docstring); validated when set."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value):
        if not isinstance(value, str) or value not in ALGORITHMS:
            raise ValueError(f"Conv2D: algorithm must be one of {ALGORITHMS}, got {value!r}")
        if value == "rows" and not self._rows_eligible:
            raise ValueError(f"Conv2D: algorithm='rows' needs groups=1 and dilation 1, "
                             f"got groups={self.groups}, dilation={self.dilation}")
        self._algorithm = value

    def get_config(self):
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                  "padding": self.padding, "dilation": list(self.dilation), "groups": self.groups,
                  "bias": self.use_bias, "init": self.init, "workspace_bytes": self.workspace_bytes,
                  "algorithm": self.algorithm}
        return config

    def _out_hw(self, h, w):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom, left, right = self.pads
        ho = output_size(h, kh, sh, top, bottom, dh)
        wo = output_size(w, kw, sw, left, right, dw)
        if ho <= 0 or wo <= 0:
            raise ValueError(
                f"Conv2D: kernel {self.kernel_size} with dilation {self.dilation} is larger than the "
                f"padded input {(h + top + bottom, w + left + right)}")
        return ho, wo

    def output_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"Conv2D: expected per-sample shape ({self.in_channels}, H, W), "
                             f"got {tuple(input_shape)}")
        return (self.out_channels,) + self._out_hw(*input_shape[1:])

    def cost(self, input_shape):
        """Forward: 2 * C_out * Ho * Wo * (C_in / groups) * kh * kw (+ C_out * Ho * Wo for
        the bias); backward twice the products (weight and input gradients). The cache
        is the unfolded input: ``C_in * kh * kw * Ho * Wo`` floats (im2col) or
        ``rows * C_in * kw * Wo`` (the row unfolding, ``rows = (Ho - 1) * stride + kh``)."""
        _, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        cached = self.in_channels * kh * kw * ho * wo
        if self._uses_rows(wo):
            cached = math.prod(conv_rows.unfolded_shape((1, self.in_channels), self.kernel_size,
                                                        self.stride, (ho, wo)))
        macs = self.out_channels * ho * wo * (self.in_channels // self.groups) * kh * kw
        bias = self.out_channels * ho * wo if self.use_bias else 0
        return {"forward_flops": 2 * macs + bias,
                "backward_flops": (4 if self.input_grad else 2) * macs + bias,
                "cache_bytes": 4 * cached}

    def _buffer(self, key, shape, dtype):
        """A workspace array reused across calls while shape and dtype stay the same."""
        buf = self._workspace.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._workspace[key] = np.empty(shape, dtype=dtype)
        return buf

    def _chunk(self, n, ho, wo, itemsize):
        kh, kw = self.kernel_size
        per_sample = self.in_channels * kh * kw * ho * wo * itemsize
        return max(1, min(n, self._limit() // per_sample))

    def _unfold(self, xp, out_hw):
        """im2col into a reused workspace (a fresh array under ``no_grad``), as a
        ``(G, C/G*kh*kw, Ho*Wo*n)`` matrix per group."""
        c, (kh, kw), n = self.in_channels, self.kernel_size, xp.shape[0]
        out = None
        if grad_enabled() and not self._pointwise:
            out = self._buffer("cols", (c, kh, kw) + out_hw + (n,), xp.dtype)
        cols = im2col(xp, self.kernel_size, self.stride, self.dilation, out_hw, out=out)
        return cols.reshape(self.groups, -1, out_hw[0] * out_hw[1] * n)

    def _uses_rows(self, wo):
        """Whether this input geometry takes the row unfolding (never decided by the batch
        size: the two unfoldings sum in different orders)."""
        if self.algorithm != "auto":
            return self.algorithm == "rows"
        return self._rows_eligible and not self._pointwise and wo >= ROWS_MIN_OUTPUT_WIDTH

    def _dx_by_rows(self, c, h, w):
        """Whether the row path computes dx by rows (stride 1, padding <= k - 1) or by fold."""
        (kh, kw), (top, bottom, left, right) = self.kernel_size, self.pads
        if self.stride != (1, 1) or max(top, bottom) > kh - 1 or max(left, right) > kw - 1:
            return False
        return self.algorithm == "rows" or (c >= ROWS_DX_MIN_CHANNELS and h * w >= ROWS_DX_MIN_PIXELS)

    def _limit(self):
        return self.workspace_bytes if grad_enabled() else min(self.workspace_bytes, NO_GRAD_CHUNK_BYTES)

    def _rows_chunk(self, x_shape, out_hw, itemsize):
        """Batch slice whose row unfolding, and the input gradient's unfolding or fold
        matrix, each fit the workspace limit."""
        n, c, h, w = x_shape
        (ho, wo), (kh, kw) = out_hw, self.kernel_size
        per_sample = math.prod(conv_rows.unfolded_shape((1, c), self.kernel_size, self.stride, out_hw))
        if grad_enabled() and self.input_grad:
            by_rows = self._dx_by_rows(c, h, w)
            dx_work = (h + kh - 1) * self.out_channels * kw * w if by_rows else c * kh * kw * ho * wo
            per_sample = max(per_sample, dx_work)
        return max(1, min(n, self._limit() // (per_sample * itemsize)))

    def _slices(self, n, chunk):
        return [(n0, min(chunk, n - n0)) for n0 in range(0, n, chunk)]

    def _unfold_rows(self, x, out_hw, keep):
        """The row unfolding of batch slice ``x``, into the reused workspace when ``keep``."""
        shape = conv_rows.unfolded_shape(x.shape, self.kernel_size, self.stride, out_hw)
        out = self._buffer("rows", shape, x.dtype) if keep else None
        return conv_rows.unfold_rows(x, self.kernel_size, self.stride, self.pads, out_hw, out=out)

    def _forward_rows(self, x, out_hw):
        (n, co), (ho, wo) = (x.shape[0], self.out_channels), out_hw
        w_rows = conv_rows.weight_rows(self.params["weight"].astype(x.dtype, copy=False))
        chunk = self._rows_chunk(x.shape, out_hw, x.dtype.itemsize)
        if chunk >= n:  # the whole batch: the unfolding is kept for backward
            u = self._unfold_rows(x, out_hw, keep=grad_enabled())
            out = conv_rows.forward(u, w_rows, self.kernel_size, self.stride, out_hw)
            self._save_for_backward(x.shape, "rows", u)
            return out.reshape(co, ho, wo, n).transpose(3, 0, 1, 2)
        out = empty_chwn(n, co, ho, wo, x.dtype)
        out_mem = out.transpose(1, 2, 3, 0)  # (C_out, Ho, Wo, N)
        for n0, nb in self._slices(n, chunk):
            u = self._unfold_rows(x[n0:n0 + nb], out_hw, keep=False)
            part = conv_rows.forward(u, w_rows, self.kernel_size, self.stride, out_hw)
            out_mem[..., n0:n0 + nb] = part.reshape(co, ho, wo, nb)
        self._save_for_backward(x.shape, "rows-chunks", x)  # backward unfolds again
        return out

    def forward(self, x):
        self._check_input(x, (self.in_channels, None, None))
        n, _, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        if n == 0:  # an empty batch: nothing to unfold
            self._save_for_backward(x.shape, "empty", None)
            return empty_chwn(0, self.out_channels, ho, wo, x.dtype)
        if self._uses_rows(wo):
            out = self._forward_rows(x, (ho, wo))
            self._add_bias(out)
            return out
        g, og = self.groups, self.out_channels // self.groups
        weight = self.params["weight"].astype(x.dtype, copy=False).reshape(g, og, -1)
        xp = pad_nchw(x, self.pads)  # (C, Hp, Wp, N) memory
        out = empty_chwn(n, self.out_channels, ho, wo, x.dtype)
        out_mem = out.transpose(1, 2, 3, 0)  # (C_out, Ho, Wo, N)
        chunk = self._chunk(n, ho, wo, x.dtype.itemsize)
        for n0 in range(0, n, chunk):
            cols = self._unfold(xp[n0:n0 + chunk], (ho, wo))
            if chunk >= n:
                np.matmul(weight, cols, out=out_mem.reshape(g, og, -1))
            else:  # a batch slice of (C_out, Ho, Wo, N) is not one matrix: write through a copy
                out_mem[..., n0:n0 + chunk] = (weight @ cols).reshape(self.out_channels, ho, wo, -1)
        self._add_bias(out)
        if chunk >= n:
            self._save_for_backward(x.shape, "cols", cols)
        else:
            self._save_for_backward(x.shape, "chunks", xp)
        return out

    def _add_bias(self, out):
        if self.use_bias:
            out_mem = out.transpose(1, 2, 3, 0)  # (C_out, Ho, Wo, N)
            out_mem += self.params["bias"].astype(out.dtype, copy=False).reshape(-1, 1, 1, 1)

    def backward(self, dout):
        x_shape, kind, saved = self._saved()
        n, c, h, w = x_shape
        ho, wo = self._out_hw(h, w)
        dout = self._check_dout(dout, (n, self.out_channels, ho, wo))
        if n == 0:
            grads = {k: np.zeros(p.shape, dout.dtype) for k, p in self.params.items()}
            return (empty_chwn(0, c, h, w, dout.dtype) if self.input_grad else None), grads
        if kind in ("rows", "rows-chunks"):
            dx, dweight = self._backward_rows(dout, kind, saved, x_shape, (ho, wo))
        else:
            dx, dweight = self._backward_im2col(dout, saved if kind == "cols" else None,
                                                saved if kind == "chunks" else None, x_shape, (ho, wo))
        grads = {"weight": dweight}
        if self.use_bias:
            grads["bias"] = dout.transpose(1, 2, 3, 0).sum(axis=(1, 2, 3))
        return dx, grads

    def _backward_rows(self, dout, kind, saved, x_shape, out_hw):
        n, c, h, w = x_shape
        (ho, wo), (kh, kw), co = out_hw, self.kernel_size, self.out_channels
        weight = self.params["weight"].astype(dout.dtype, copy=False)
        by_rows = self.input_grad and self._dx_by_rows(c, h, w)
        flipped = conv_rows.flipped_rows(weight) if by_rows else None
        if kind == "rows":
            slices = [(0, n)]
        else:
            slices = self._slices(n, self._rows_chunk(x_shape, out_hw, dout.dtype.itemsize))
            dx = empty_chwn(n, c, h, w, dout.dtype) if self.input_grad else None
        dweight = 0
        for n0, nb in slices:
            u = saved if kind == "rows" else self._unfold_rows(saved[n0:n0 + nb], out_hw, keep=False)
            dout_slice = dout[n0:n0 + nb]
            dweight = dweight + conv_rows.weight_grad(u, dout_slice, self.kernel_size, self.stride,
                                                      self._limit())
            if not self.input_grad:
                continue
            if by_rows:
                du = self._buffer("drows", (h + kh - 1, co, kw, w, nb), dout.dtype)
                part = conv_rows.input_grad(dout_slice, flipped, self.kernel_size, self.pads, (h, w), out=du)
            else:
                dout_mem = np.ascontiguousarray(dout_slice.transpose(1, 2, 3, 0)).reshape(1, co, -1)
                part = self._input_grad_by_fold(dout_mem, weight.reshape(1, co, -1), (nb, c, h, w), out_hw)
            if kind == "rows":
                dx = part
            else:
                dx[n0:n0 + nb] = part
        dweight = np.ascontiguousarray(dweight.reshape(co, kh, c, kw).transpose(0, 2, 1, 3))
        return (dx if self.input_grad else None), dweight

    def _input_grad_by_fold(self, dout_g, weight, x_shape, out_hw):
        """dx of the batch slice whose upstream gradient is ``dout_g`` (G, C_out/G, Ho*Wo*nb):
        the weight's transpose times it, folded back by col2im and cropped."""
        nb, c, h, w = x_shape
        (ho, wo), (kh, kw) = out_hw, self.kernel_size
        top, bottom, left, right = self.pads
        # a 1x1 stride-1 fold returns dcols itself as dx, so it must not be a workspace
        shape = (self.groups, weight.shape[2], dout_g.shape[2])
        dcols = np.empty(shape, dout_g.dtype) if self._pointwise \
            else self._buffer("dcols", shape, dout_g.dtype)
        np.matmul(weight.transpose(0, 2, 1), dout_g, out=dcols)
        dxp = col2im(dcols.reshape(c, kh, kw, ho, wo, nb), (h + top + bottom, w + left + right),
                     self.kernel_size, self.stride, self.dilation)
        return dxp[:, :, top:top + h, left:left + w]

    def _backward_im2col(self, dout, cols, xp, x_shape, out_hw):
        n, c, h, w = x_shape
        ho, wo = out_hw
        g, og = self.groups, self.out_channels // self.groups
        weight = self.params["weight"].astype(dout.dtype, copy=False).reshape(g, og, -1)
        # (N, C_out, Ho, Wo) -> (C_out, Ho, Wo, N): free when dout has this layer's output layout
        dout_mem = dout.transpose(1, 2, 3, 0)
        dweight = None
        whole_batch = cols is not None
        dx = None
        if self.input_grad and not whole_batch:
            dx = empty_chwn(n, c, h, w, dout.dtype)
        chunk = n if whole_batch else self._chunk(n, ho, wo, dout.dtype.itemsize)
        for n0 in range(0, n, chunk):
            nb = min(chunk, n - n0)
            if not whole_batch:
                cols = self._unfold(xp[n0:n0 + nb], (ho, wo))
            dout_g = dout_mem[..., n0:n0 + nb].reshape(g, og, -1)
            # (cols @ dout^T)^T: the same product, 15-30 % faster in OpenBLAS than dout @ cols^T
            # for these shapes (a long inner dimension and few output rows)
            part = (cols @ dout_g.transpose(0, 2, 1)).transpose(0, 2, 1)
            dweight = part if dweight is None else dweight + part
            if not self.input_grad:
                continue
            crop = self._input_grad_by_fold(dout_g, weight, (nb, c, h, w), out_hw)
            if whole_batch:
                dx = crop
            else:
                dx[n0:n0 + nb] = crop
        return dx, dweight.reshape(self.params["weight"].shape)
