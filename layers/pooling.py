"""Max, average and global-average pooling over NCHW images.

Pooling uses the window geometry and kernel offsets of the shared im2col module:
each offset is a strided view of the padded input with one element per output
pixel, so a pooling pass is a few vectorised operations per offset, never a loop
over pixels. Results keep the (C, H, W, N) memory layout of the data.
"""
import math

import numpy as np

from .base import Layer
from .im2col import as_pair, as_padding, empty_chwn, offset_slices, output_size, pad_nchw, tap_slices


class _Pool2D(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = as_pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", name)
        self.pads = as_padding(padding, name)
        self.padding = padding if np.isscalar(padding) else list(padding)
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

    def cost(self, input_shape):
        """Average pooling: kh*kw operations per output element each way, nothing cached."""
        n_out = math.prod(self.output_shape(input_shape))
        k = self.kernel_size[0] * self.kernel_size[1]
        return {"forward_flops": k * n_out, "backward_flops": k * n_out, "cache_bytes": 0}

    def _offsets(self, out_hw):
        return offset_slices(self.kernel_size, self.stride, (1, 1), out_hw)


class MaxPool2D(_Pool2D):
    """Maximum over each window; padding counts as -inf.

    The maximum is separable: first over the kw columns of every window row,
    then over the kh rows of those row maxima, which takes kh + kw passes
    instead of kh * kw. Each pass also records which tap won (uint8), so
    backward routes each upstream gradient to the arg-max of its window only;
    on ties the first maximal element in row-major window order wins (the first
    row holding the maximum, then that row's first maximal column).

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo), Ho = floor((H + 2 * pad_h - kh) / stride_h) + 1
             (ceiling with ``ceil_mode``), Wo likewise
    """

    def _taps(self, out_hw):
        """Slices of the padded rows and columns that hold tap i (resp. j) of every window."""
        (kh, kw), (sh, sw), (ho, wo) = self.kernel_size, self.stride, out_hw
        return tap_slices(kh, sh, 1, ho), tap_slices(kw, sw, 1, wo)

    def cost(self, input_shape):
        """kw comparisons per row maximum, kh per output, each way; one byte per row
        maximum and per output is kept (the winning taps)."""
        c, h, _ = input_shape
        _, ho, wo = self.output_shape(input_shape)
        (kh, kw) = self.kernel_size
        row_max, n_out = c * h * wo, c * ho * wo
        return {"forward_flops": kw * row_max + kh * n_out, "backward_flops": kw * row_max + kh * n_out,
                "cache_bytes": row_max + n_out}

    def forward(self, x):
        self._check_input(x, (None, None, None))
        out_hw, pads = self._geometry(*x.shape[2:])
        rows, cols = self._taps(out_hw)
        xp = pad_nchw(x, pads, value=-np.inf)
        row_max, col_tap = _max_and_tap([xp[:, :, :, c] for c in cols])   # (N, C, Hp, Wo)
        out, row_tap = _max_and_tap([row_max[:, :, r, :] for r in rows])  # (N, C, Ho, Wo)
        self._save_for_backward(x.shape, pads, col_tap, row_tap)
        return out

    def backward(self, dout):
        x_shape, pads, col_tap, row_tap = self._saved()
        self._check_dout(dout, row_tap.shape)
        rows, cols = self._taps(row_tap.shape[2:])
        (kh, kw), (sh, sw), (ho, wo) = self.kernel_size, self.stride, row_tap.shape[2:]
        n, c, h, w = x_shape
        top, bottom, left, right = pads
        hp, wp = h + top + bottom, w + left + right
        # zero-fill only where some element receives nothing (windows leave gaps)
        drow = empty_chwn(n, c, hp, wo, dout.dtype, fill=None if sh == kh and ho * kh == hp else 0)
        _route(dout, row_tap, [drow[:, :, r, :] for r in rows], overlap=sh < kh)
        dxp = empty_chwn(n, c, hp, wp, dout.dtype, fill=None if sw == kw and wo * kw == wp else 0)
        _route(drow, col_tap, [dxp[:, :, :, col] for col in cols], overlap=sw < kw)
        return dxp[:, :, top:top + h, left:left + w], {}


def _max_and_tap(views):
    """Element-wise maximum of ``views`` and the index of the first view holding it."""
    if len(views) == 1:
        return views[0].copy(order="K"), np.zeros_like(views[0], dtype=np.uint8)
    # new arrays take the inputs' memory layout (C, H, W, N)
    tap = (views[1] > views[0]).view(np.uint8)  # strict: on ties the earlier tap stays
    best = np.maximum(views[0], views[1])
    for t, v in enumerate(views[2:], start=2):
        larger = v > best
        np.maximum(best, v, out=best)
        tap += larger * (np.uint8(t) - tap)  # tap = t where larger
    return best, tap


def _route(grad, tap, targets, overlap):
    """Send ``grad`` to ``targets[tap]``: written, or added when windows overlap."""
    for t, target in enumerate(targets):
        if overlap:
            target += grad * (tap == t)
        else:
            np.multiply(grad, tap == t, out=target)


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
        windows = (xp[:, :, rows, cols] for _, _, (rows, cols) in self._offsets(out_hw))
        out = next(windows).copy(order="K")  # order K keeps the (C, H, W, N) memory layout
        for window in windows:
            out += window
        divisor = self._divisor(x.shape, pads, out_hw, x.dtype)
        out /= divisor
        self._save_for_backward(x.shape, pads, divisor)
        return out

    def backward(self, dout):
        x_shape, pads, divisor = self._saved()
        self._check_dout(dout, x_shape[:2] + divisor.shape[2:])
        share = dout / divisor
        n, c, h, w = x_shape
        top, bottom, left, right = pads
        dxp = empty_chwn(n, c, h + top + bottom, w + left + right, dout.dtype, fill=0)
        # every element of a window receives an equal share of the window's gradient
        for _, _, (rows, cols) in self._offsets(dout.shape[2:]):
            dxp[:, :, rows, cols] += share
        return dxp[:, :, top:top + h, left:left + w], {}


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

    def cost(self, input_shape):
        n = math.prod(input_shape)
        return {"forward_flops": n, "backward_flops": n, "cache_bytes": 0}

    def forward(self, x):
        self._check_input(x, (None, None, None))
        self._save_for_backward(x.shape)
        return x.mean(axis=(2, 3))

    def backward(self, dout):
        (x_shape,) = self._saved()
        self._check_dout(dout, x_shape[:2])
        scale = dout.dtype.type(1.0 / (x_shape[2] * x_shape[3]))
        dx = empty_chwn(*x_shape, dout.dtype)
        dx[...] = (dout * scale)[:, :, None, None]
        return dx, {}
