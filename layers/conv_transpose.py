"""2-D transposed convolution ("deconvolution"): the adjoint of Conv2D, on the same im2col."""
import numpy as np

from .base import Layer
from .im2col import col2im, empty_chwn, im2col, pad_nchw
from .init import initialize, make_rng
from .validation import check_size


def _pair(value, name, minimum=1):
    """An int or a pair of ints, each ``>= minimum`` -> a tuple of two ints."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"ConvTranspose2D: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(check_size("ConvTranspose2D", name, v, minimum) for v in pair)


class ConvTranspose2D(Layer):
    """Grouped 2-D transposed convolution (PyTorch's ``nn.ConvTranspose2d``).

    It computes what Conv2D's backward computes for the input: every input pixel scatters
    ``weight[c]`` times its value onto a kh x kw window of the (stride-dilated) output, so
    forward is a matrix product followed by ``col2im`` and backward is ``im2col`` followed by
    products, the roles they play in Conv2D swapped:

    ``cols = weight^T @ x`` per group, ``(C_out/g*kh*kw, H*W*N)``; ``out = col2im(cols)``
    cropped by ``padding``. Backward unfolds ``dout`` (padded) into the same columns:
    ``dx = weight @ im2col(dout)``, ``dweight = x @ im2col(dout)^T``.

    ``output_padding`` adds rows and columns at the bottom and right of the output (they only
    receive the bias) and picks one of the output sizes that a strided convolution maps to
    the same input size; it must be smaller than the stride or the dilation.

    Shape:
        x:      (N, in_channels, H, W)
        out:    (N, out_channels, Ho, Wo) with
                Ho = (H - 1) * stride_h - 2 * padding_h + dilation_h * (kh - 1) + output_padding_h + 1
                (Wo likewise)
        weight: (in_channels, out_channels // groups, kh, kw)
        bias:   (out_channels,)
    """

    init_only = ("rng",)  # draws the initial weights, which are saved

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, init="he_normal", rng=None):
        super().__init__()
        name = "ConvTranspose2D"
        self.in_channels = check_size(name, "in_channels", in_channels)
        self.out_channels = check_size(name, "out_channels", out_channels)
        self.groups = check_size(name, "groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                             f"must both be divisible by groups ({self.groups})")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        self.padding = _pair(padding, "padding", minimum=0)
        self.output_padding = _pair(output_padding, "output_padding", minimum=0)
        for axis, (p, s, d) in enumerate(zip(self.output_padding, self.stride, self.dilation)):
            if p >= s and p >= d:
                raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller than the "
                                 f"stride {self.stride} or the dilation {self.dilation} (axis {axis})")
        self.use_bias, self.init = bool(bias), init
        kh, kw = self.kernel_size
        # fan_in: the inputs that feed one output (C_in/g * kh*kw at stride 1, about 1/(sh*sw) of
        # that at a larger stride); fan_out: the outputs one input feeds
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self.params["weight"] = initialize((self.in_channels, self.out_channels // self.groups, kh, kw),
                                           fan_in, fan_out, init, make_rng(rng, "ConvTranspose2D"))
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=np.float32)

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "output_padding": list(self.output_padding),
                "groups": self.groups, "bias": self.use_bias, "dilation": list(self.dilation),
                "init": self.init}

    def _out_hw(self, h, w):
        out = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                    zip((h, w), self.stride, self.padding, self.dilation, self.kernel_size, self.output_padding))
        if min(out) <= 0:
            raise ValueError(f"ConvTranspose2D: padding {self.padding} leaves no output for input size {(h, w)}")
        return out

    def output_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"ConvTranspose2D: expected per-sample shape ({self.in_channels}, H, W), "
                             f"got {tuple(input_shape)}")
        return (self.out_channels,) + self._out_hw(*input_shape[1:])

    def cost(self, input_shape):
        """Forward: 2 * C_in * H * W * (C_out / groups) * kh * kw (+ C_out * Ho * Wo for the
        bias); backward twice the products (input and weight gradients). The input is cached."""
        c, h, w = input_shape
        _, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        macs = c * h * w * (self.out_channels // self.groups) * kh * kw
        bias = self.out_channels * ho * wo if self.use_bias else 0
        return {"forward_flops": 2 * macs + bias,
                "backward_flops": (4 if self.input_grad else 2) * macs + bias,
                "cache_bytes": 4 * c * h * w}

    def _weight(self, dtype):
        """(C_in, C_out/g, kh, kw) -> (g, C_in/g, C_out/g*kh*kw)."""
        return self.params["weight"].astype(dtype, copy=False).reshape(self.groups, self.in_channels // self.groups, -1)

    def forward(self, x):
        self._check_input(x, (self.in_channels, None, None))
        n, _, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        (kh, kw), (ph, pw), g = self.kernel_size, self.padding, self.groups
        xc = pad_nchw(x, (0, 0, 0, 0))  # (C_in, H, W, N) memory; x itself when it has it
        # (N, C_in, H, W) -> (g, C_in/g, H*W*N), a free view of that memory
        x_mem = xc.transpose(1, 2, 3, 0).reshape(g, self.in_channels // g, h * w * n)
        cols = np.matmul(self._weight(x.dtype).transpose(0, 2, 1), x_mem)
        # (g, C_out/g*kh*kw, H*W*N) -> (C_out, kh, kw, H, W, N), then fold onto the padded output
        padded = col2im(cols.reshape(self.out_channels, kh, kw, h, w, n), (ho + 2 * ph, wo + 2 * pw),
                        self.kernel_size, self.stride, self.dilation)
        out = empty_chwn(n, self.out_channels, ho, wo, x.dtype)
        out[...] = padded[:, :, ph:ph + ho, pw:pw + wo]
        if self.use_bias:
            out += self.params["bias"].astype(x.dtype, copy=False).reshape(1, -1, 1, 1)
        self._save_for_backward(xc)
        return out

    def backward(self, dout):
        (xc,) = self._saved()
        n, _, h, w = xc.shape
        ho, wo = self._out_hw(h, w)
        dout = self._check_dout(dout, (n, self.out_channels, ho, wo))
        (ph, pw), g = self.padding, self.groups
        # the windows forward folded, unfolded again; rows that output_padding added lie
        # past the last window and are never read
        doutp = pad_nchw(dout, (ph, ph, pw, pw))
        # (C_out, kh, kw, H, W, N) -> (g, C_out/g*kh*kw, H*W*N)
        cols = im2col(doutp, self.kernel_size, self.stride, self.dilation, (h, w))
        cols = cols.reshape(g, self.out_channels // g * self.kernel_size[0] * self.kernel_size[1], h * w * n)
        x_mem = xc.transpose(1, 2, 3, 0).reshape(g, self.in_channels // g, h * w * n)
        dweight = np.matmul(x_mem, cols.transpose(0, 2, 1)).reshape(self.params["weight"].shape)
        grads = {"weight": dweight}
        if self.use_bias:
            grads["bias"] = dout.sum(axis=(0, 2, 3))
        dx = None
        if self.input_grad:
            dx_mem = np.matmul(self._weight(dout.dtype), cols)  # (g, C_in/g, H*W*N)
            dx = dx_mem.reshape(self.in_channels, h, w, n).transpose(3, 0, 1, 2)
        return dx, grads
