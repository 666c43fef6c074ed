"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col."""
import numpy as np

from .base import Layer
from .im2col import as_padding, as_pair, col2im, im2col, output_size, pad_nchw
from .init import initialize, make_rng

DEFAULT_WORKSPACE_BYTES = 256 * 2**20
# eval mode keeps nothing for backward, so it unfolds in chunks small enough that the
# allocator reuses their memory from call to call instead of mapping fresh pages
EVAL_CHUNK_BYTES = 16 * 2**20


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

    The output is an NCHW array backed by channel-major ``(C_out, N, Ho, Wo)``
    memory, which is what the matrix product writes; the next layer reads it
    through its strides, so no transpose is ever copied.

    The unfolded matrix is processed in batch chunks no larger than
    ``workspace_bytes``; when the whole batch fits, it is kept for backward,
    otherwise backward unfolds again chunk by chunk.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, init="he_normal", rng=None,
                 workspace_bytes=DEFAULT_WORKSPACE_BYTES):
        super().__init__()
        name = "Conv2D"
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = as_pair(kernel_size, "kernel_size", name)
        self.stride = as_pair(stride, "stride", name)
        self.dilation = as_pair(dilation, "dilation", name)
        self.padding = padding
        if padding == "valid":
            self.pads = (0, 0, 0, 0)
        elif padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {self.stride}")
            # total padding d*(k-1); the odd element goes after, as in PyTorch
            th, tw = (d * (k - 1) for d, k in zip(self.dilation, self.kernel_size))
            self.pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            self.pads = as_padding(padding, name)
            self.padding = padding if np.isscalar(padding) else list(padding)
        self.use_bias, self.init = bool(bias), init
        self.workspace_bytes = int(workspace_bytes)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self.params["weight"] = initialize(
            (self.out_channels, self.in_channels // self.groups, kh, kw), fan_in, fan_out, init, make_rng(rng))
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=np.float32)
        self._pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1)
        self._workspace = {}

    def get_config(self):
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                  "padding": self.padding, "dilation": list(self.dilation), "groups": self.groups,
                  "bias": self.use_bias, "init": self.init}
        if self.workspace_bytes != DEFAULT_WORKSPACE_BYTES:
            config["workspace_bytes"] = self.workspace_bytes
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
        limit = self.workspace_bytes if self.training else min(self.workspace_bytes, EVAL_CHUNK_BYTES)
        return max(1, min(n, limit // per_sample))

    def _unfold(self, xp, out_hw, key):
        """im2col into a reused workspace (or a fresh array in eval mode)."""
        c, (kh, kw), n = self.in_channels, self.kernel_size, xp.shape[0]
        out = self._buffer(key, (c, kh, kw, n) + out_hw, xp.dtype) if self.training else None
        if self._pointwise:
            out = None  # no unfolding: a view of x when its memory is channel-major
        return im2col(xp, self.kernel_size, self.stride, self.dilation, out_hw, out=out)

    def forward(self, x):
        self._check_input(x, (self.in_channels, None, None))
        n, _, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        g = self.groups
        weight = self.params["weight"].astype(x.dtype, copy=False).reshape(g, self.out_channels // g, -1)
        xp = pad_nchw(x, self.pads)
        out = np.empty((self.out_channels, n, ho, wo), dtype=x.dtype)
        chunk = self._chunk(n, ho, wo, x.dtype.itemsize)
        for n0 in range(0, n, chunk):
            cols = self._unfold(xp[n0:n0 + chunk], (ho, wo), "cols")
            # (C, kh, kw, n, Ho, Wo) -> (G, C/G*kh*kw, n*Ho*Wo)
            cols2 = cols.reshape(g, weight.shape[2], -1)
            out_chunk = out[:, n0:n0 + chunk].reshape(g, self.out_channels // g, -1)
            np.matmul(weight, cols2, out=out_chunk)
        if self.use_bias:
            out += self.params["bias"].astype(x.dtype, copy=False).reshape(-1, 1, 1, 1)
        if chunk >= n:
            self._save_for_backward(x.shape, None, cols2)
        else:
            self._save_for_backward(x.shape, xp, None)
        return out.transpose(1, 0, 2, 3)

    def backward(self, dout):
        x_shape, xp, cols2 = self._saved()
        n, c, h, w = x_shape
        ho, wo = self._out_hw(h, w)
        self._check_dout(dout, (n, self.out_channels, ho, wo))
        g, (kh, kw) = self.groups, self.kernel_size
        top, _, left, _ = self.pads
        padded_hw = (h + self.pads[0] + self.pads[1], w + self.pads[2] + self.pads[3])
        weight = self.params["weight"].astype(dout.dtype, copy=False).reshape(g, self.out_channels // g, -1)
        # (N, C_out, Ho, Wo) -> (C_out, N, Ho, Wo): free when dout is channel-major in memory
        dout_cn = dout.transpose(1, 0, 2, 3)
        dweight = np.zeros_like(weight)
        whole_batch = cols2 is not None
        dx = dx_cn = None
        if self.input_grad and not whole_batch:
            dx_cn = np.empty((c, n, h, w), dtype=dout.dtype)
        chunk = n if whole_batch else self._chunk(n, ho, wo, dout.dtype.itemsize)
        for n0 in range(0, n, chunk):
            nb = min(chunk, n - n0)
            if not whole_batch:
                cols2 = self._unfold(xp[n0:n0 + nb], (ho, wo), "cols").reshape(g, weight.shape[2], -1)
            dout_g = dout_cn[:, n0:n0 + nb].reshape(g, self.out_channels // g, -1)
            dweight += dout_g @ cols2.transpose(0, 2, 1)
            if not self.input_grad:
                continue
            # a 1x1 stride-1 fold returns dcols itself as dx, so it must not be a workspace
            dcols = np.empty(cols2.shape, dout.dtype) if self._pointwise \
                else self._buffer("dcols", cols2.shape, dout.dtype)
            np.matmul(weight.transpose(0, 2, 1), dout_g, out=dcols)
            dxp = col2im(dcols.reshape(c, kh, kw, nb, ho, wo), padded_hw,
                         self.kernel_size, self.stride, self.dilation)
            crop = dxp[:, :, top:top + h, left:left + w]
            if whole_batch:
                dx = crop
            else:
                dx_cn[:, n0:n0 + nb] = crop.transpose(1, 0, 2, 3)
        if dx_cn is not None:
            dx = dx_cn.transpose(1, 0, 2, 3)
        grads = {"weight": dweight.reshape(self.params["weight"].shape)}
        if self.use_bias:
            grads["bias"] = dout_cn.sum(axis=(1, 2, 3))
        return dx, grads
