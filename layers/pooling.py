"""Max, average and global-average pooling over NCHW images.

Pooling visits the kh*kw kernel offsets of the shared im2col module: each offset
is a strided view of the padded input with one element per output pixel, so a
pooling pass is kh*kw vectorised operations, never a loop over pixels.
"""
import numpy as np

from .base import Layer
from .im2col import as_pair, as_padding, offset_slices, output_size, pad_nchw


class _Pool2D(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = as_pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", name)
        self.padding = padding if np.isscalar(padding) else list(padding)
        self.pads = as_padding(padding, name)
        if self.pads[0] * 2 > self.kernel_size[0] or self.pads[2] * 2 > self.kernel_size[1]:
            raise ValueError(f"{name}: padding {padding} must be at most half the kernel size "
                             f"{self.kernel_size}")
        self.ceil_mode = bool(ceil_mode)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding, "ceil_mode": self.ceil_mode}

    def _geometry(self, h, w):
        """Output size and the padding (top, bottom, left, right) that covers every window."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom, left, right = self.pads
        ho = output_size(h, kh, sh, top, bottom, 1, self.ceil_mode)
        wo = output_size(w, kw, sw, left, right, 1, self.ceil_mode)
        if ho <= 0 or wo <= 0:
            raise ValueError(f"{type(self).__name__}: kernel {self.kernel_size} is larger than the "
                             f"padded input {(h + top + bottom, w + left + right)}")
        # ceil mode: the last window may run past the bottom/right padding
        bottom = max(bottom, (ho - 1) * sh + kh - h - top)
        right = max(right, (wo - 1) * sw + kw - w - left)
        return (ho, wo), (top, bottom, left, right)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        return (input_shape[0],) + self._geometry(*input_shape[1:])[0]

    def _offsets(self, out_hw):
        return offset_slices(self.kernel_size, self.stride, (1, 1), out_hw)


class MaxPool2D(_Pool2D):
    """Maximum over each window; padding counts as -inf.

    Backward routes each upstream gradient to the arg-max of its window only;
    on ties the first maximal element in row-major window order wins.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo), Ho = floor((H + 2 * pad_h - kh) / stride_h) + 1
             (ceiling with ``ceil_mode``), Wo likewise
    """

    def forward(self, x):
        self._check_input(x, (None, None, None))
        out_hw, pads = self._geometry(*x.shape[2:])
        xp = pad_nchw(x, pads, value=-np.inf)
        windows = (xp[:, :, rows, cols] for _, _, (rows, cols) in self._offsets(out_hw))
        out = next(windows).copy()
        # index of the winning kernel offset; strict '>' keeps the first of tied maxima
        argmax = np.zeros(out.shape, dtype=np.min_scalar_type(self.kernel_size[0] * self.kernel_size[1]))
        for k, window in enumerate(windows, start=1):
            larger = window > out
            np.copyto(out, window, where=larger)
            argmax[larger] = k
        self._save_for_backward(x.shape, pads, argmax)
        return out

    def backward(self, dout):
        x_shape, pads, argmax = self._saved()
        self._check_dout(dout, argmax.shape)
        return _fold(self, dout, x_shape, pads, lambda k: np.where(argmax == k, dout, 0)), {}


class AvgPool2D(_Pool2D):
    """Mean over each window; zero padding is counted in the divisor, as in
    PyTorch's default (``count_include_pad=True``); windows that ``ceil_mode``
    lets run past the padding count only their in-bounds part.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo), Ho = floor((H + 2 * pad_h - kh) / stride_h) + 1
             (ceiling with ``ceil_mode``), Wo likewise
    """

    def _divisor(self, x_shape, pads, out_hw, dtype):
        """Per-pixel window size (1, 1, Ho, Wo): kh*kw except for ceil-mode edge windows."""
        h, w = x_shape[2:]
        top, bottom, left, right = self.pads
        inside = np.zeros((1, 1, h + pads[0] + pads[1], w + pads[2] + pads[3]), dtype)
        inside[:, :, :top + h + bottom, :left + w + right] = 1
        count = sum(inside[:, :, r, c] for _, _, (r, c) in self._offsets(out_hw))
        return count

    def forward(self, x):
        self._check_input(x, (None, None, None))
        out_hw, pads = self._geometry(*x.shape[2:])
        xp = pad_nchw(x, pads)
        out = None
        for _, _, (rows, cols) in self._offsets(out_hw):
            out = xp[:, :, rows, cols].copy() if out is None else np.add(out, xp[:, :, rows, cols], out=out)
        divisor = self._divisor(x.shape, pads, out_hw, x.dtype)
        out /= divisor
        self._save_for_backward(x.shape, pads, divisor)
        return out

    def backward(self, dout):
        x_shape, pads, divisor = self._saved()
        self._check_dout(dout, x_shape[:2] + divisor.shape[2:])
        share = dout / divisor
        return _fold(self, dout, x_shape, pads, lambda k: share), {}


def _fold(pool, dout, x_shape, pads, grad_at_offset):
    """Sum ``grad_at_offset(k)`` over the kernel offsets into the input's gradient."""
    n, c, h, w = x_shape
    top, bottom, left, right = pads
    dxp = np.zeros((c, n, h + top + bottom, w + left + right), dtype=dout.dtype)
    dxp_nchw = dxp.transpose(1, 0, 2, 3)
    for k, (_, _, (rows, cols)) in enumerate(pool._offsets(dout.shape[2:])):
        dxp_nchw[:, :, rows, cols] += grad_at_offset(k)
    return dxp_nchw[:, :, top:top + h, left:left + w]


class GlobalAvgPool2D(Layer):
    """Mean over all spatial positions.

    Shape:
        x:   (N, C, H, W)
        out: (N, C)
    """

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2D: expected per-sample shape (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],)

    def forward(self, x):
        self._check_input(x, (None, None, None))
        self._save_for_backward(x.shape)
        return x.mean(axis=(2, 3))

    def backward(self, dout):
        (x_shape,) = self._saved()
        self._check_dout(dout, x_shape[:2])
        n, c, h, w = x_shape
        scale = dout.dtype.type(1.0 / (h * w))
        return np.broadcast_to((dout * scale)[:, :, None, None], x_shape).copy(), {}
