"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col."""
import numpy as np

from .base import Layer, grad_enabled
from .im2col import as_padding, as_pair, col2im, empty_chwn, im2col, output_size, pad_nchw
from .init import initialize, make_rng, zeros
from .validation import check_size

DEFAULT_WORKSPACE_BYTES = 256 * 2**20
# under no_grad() nothing is kept for backward (in either mode), so the forward unfolds in
# chunks small enough that the allocator reuses their memory instead of mapping fresh pages
NO_GRAD_CHUNK_BYTES = 16 * 2**20


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

    The unfolded matrix is processed in batch chunks no larger than
    ``workspace_bytes``; when the whole batch fits, it is kept for backward (in train
    and eval mode alike), otherwise backward unfolds again chunk by chunk. Under
    :func:`layers.no_grad` nothing is kept and the chunks are at most 16 MiB.
    """

    init_only = ("rng",)  # draws the initial weights, which are saved

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, init="he_normal", rng=None,
                 workspace_bytes=DEFAULT_WORKSPACE_BYTES):
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
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self.params["weight"] = initialize(
            (self.out_channels, self.in_channels // self.groups, kh, kw), fan_in, fan_out, init, make_rng(rng))
        if self.use_bias:
            self.params["bias"] = zeros(self.out_channels)
        self._pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1)
        self._workspace = {}

    def get_config(self):
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                  "padding": self.padding, "dilation": list(self.dilation), "groups": self.groups,
                  "bias": self.use_bias, "init": self.init, "workspace_bytes": self.workspace_bytes}
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
        is the unfolded input, ``C_in * kh * kw * Ho * Wo`` floats."""
        _, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        macs = self.out_channels * ho * wo * (self.in_channels // self.groups) * kh * kw
        bias = self.out_channels * ho * wo if self.use_bias else 0
        return {"forward_flops": 2 * macs + bias,
                "backward_flops": (4 if self.input_grad else 2) * macs + bias,
                "cache_bytes": 4 * self.in_channels * kh * kw * ho * wo}

    def _buffer(self, key, shape, dtype):
        """A workspace array reused across calls while shape and dtype stay the same."""
        buf = self._workspace.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._workspace[key] = np.empty(shape, dtype=dtype)
        return buf

    def _chunk(self, n, ho, wo, itemsize):
        kh, kw = self.kernel_size
        per_sample = self.in_channels * kh * kw * ho * wo * itemsize
        limit = self.workspace_bytes if grad_enabled() else min(self.workspace_bytes, NO_GRAD_CHUNK_BYTES)
        return max(1, min(n, limit // per_sample))

    def _unfold(self, xp, out_hw):
        """im2col into a reused workspace (a fresh array under ``no_grad``), as a
        ``(G, C/G*kh*kw, Ho*Wo*n)`` matrix per group."""
        c, (kh, kw), n = self.in_channels, self.kernel_size, xp.shape[0]
        out = None
        if grad_enabled() and not self._pointwise:
            out = self._buffer("cols", (c, kh, kw) + out_hw + (n,), xp.dtype)
        cols = im2col(xp, self.kernel_size, self.stride, self.dilation, out_hw, out=out)
        return cols.reshape(self.groups, -1, out_hw[0] * out_hw[1] * n)

    def forward(self, x):
        self._check_input(x, (self.in_channels, None, None))
        n, _, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        if n == 0:  # an empty batch: nothing to unfold
            self._save_for_backward(x.shape, None, None)
            return empty_chwn(0, self.out_channels, ho, wo, x.dtype)
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
        if self.use_bias:
            out_mem += self.params["bias"].astype(x.dtype, copy=False).reshape(-1, 1, 1, 1)
        if chunk >= n:
            self._save_for_backward(x.shape, None, cols)
        else:
            self._save_for_backward(x.shape, xp, None)
        return out

    def backward(self, dout):
        x_shape, xp, cols = self._saved()
        n, c, h, w = x_shape
        ho, wo = self._out_hw(h, w)
        self._check_dout(dout, (n, self.out_channels, ho, wo))
        if n == 0:
            grads = {k: np.zeros(p.shape, dout.dtype) for k, p in self.params.items()}
            return (empty_chwn(0, c, h, w, dout.dtype) if self.input_grad else None), grads
        g, og, (kh, kw) = self.groups, self.out_channels // self.groups, self.kernel_size
        top, _, left, _ = self.pads
        padded_hw = (h + self.pads[0] + self.pads[1], w + self.pads[2] + self.pads[3])
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
            # a 1x1 stride-1 fold returns dcols itself as dx, so it must not be a workspace
            dcols = np.empty(cols.shape, dout.dtype) if self._pointwise \
                else self._buffer("dcols", cols.shape, dout.dtype)
            np.matmul(weight.transpose(0, 2, 1), dout_g, out=dcols)
            dxp = col2im(dcols.reshape(c, kh, kw, ho, wo, nb), padded_hw,
                         self.kernel_size, self.stride, self.dilation)
            crop = dxp[:, :, top:top + h, left:left + w]
            if whole_batch:
                dx = crop
            else:
                dx[n0:n0 + nb] = crop
        grads = {"weight": dweight.reshape(self.params["weight"].shape)}
        if self.use_bias:
            grads["bias"] = dout_mem.sum(axis=(1, 2, 3))
        return dx, grads
