"""Max, average and global-average pooling over NCHW images.

Pooling uses the tap geometry of the shared im2col module (``tap_ranges``): for
each kernel tap, the output positions whose tap falls inside the input and the
strided input slice they read, so padding is never materialised. Max and average
pooling are separable, a pass over window columns and then one over window rows,
each a few vectorised operations per tap, never a loop over pixels. Results keep
the (C, H, W, N) memory layout of the data.
"""
import functools
import math

import numpy as np

from .base import Layer
from .im2col import as_pair, as_padding, empty_chwn, output_size, tap_ranges


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
        """Output size (Ho, Wo)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom, left, right = self.pads
        ho = output_size(h, kh, sh, top, bottom, 1, self.ceil_mode)
        wo = output_size(w, kw, sw, left, right, 1, self.ceil_mode)
        if ho <= 0 or wo <= 0:
            raise ValueError(f"{type(self).__name__}: kernel {self.kernel_size} is larger than the "
                             f"padded input {(h + top + bottom, w + left + right)}")
        return ho, wo

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        return (input_shape[0],) + self._geometry(*input_shape[1:])

    def cost(self, input_shape):
        """Average pooling: kh*kw operations per output element each way, nothing cached."""
        n_out = math.prod(self.output_shape(input_shape))
        k = self.kernel_size[0] * self.kernel_size[1]
        return {"forward_flops": k * n_out, "backward_flops": k * n_out, "cache_bytes": 0}

    def _plans(self, x_shape, out_hw):
        """The row pass's and the column pass's :func:`_pass_plan`."""
        return [_pass_plan(k, s, pad, size, out) for k, s, pad, size, out in
                zip(self.kernel_size, self.stride, self.pads[::2], x_shape[2:], out_hw)]


class MaxPool2D(_Pool2D):
    """Maximum over each window; padding counts as -inf.

    The maximum is separable: first over the kw columns of every window row,
    then over the kh rows of those row maxima, which takes kh + kw passes
    instead of kh * kw. Each pass also records which tap won (uint8), so
    backward routes each upstream gradient to the arg-max of its window only;
    on ties the first maximal element in row-major window order wins (the first
    row holding the maximum, then that row's first maximal column). Padding is
    never materialised: each tap reads only the input it overlaps.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo), Ho = floor((H + 2 * pad_h - kh) / stride_h) + 1
             (ceiling with ``ceil_mode``), Wo likewise
    """

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
        out_hw = self._geometry(*x.shape[2:])
        rows, cols = self._plans(x.shape, out_hw)
        row_max, col_tap = _max_and_tap(x, 3, cols, out_hw[1])    # (N, C, H, Wo)
        out, row_tap = _max_and_tap(row_max, 2, rows, out_hw[0])  # (N, C, Ho, Wo)
        self._save_for_backward(x.shape, col_tap, row_tap)
        return out

    def backward(self, dout):
        x_shape, col_tap, row_tap = self._saved()
        dout = self._check_dout(dout, row_tap.shape)
        rows, cols = self._plans(x_shape, row_tap.shape[2:])
        drow = _route(dout, row_tap, 2, rows, x_shape[2])  # (N, C, H, Wo)
        return _route(drow, col_tap, 3, cols, x_shape[3]), {}


def _along(axis, index):
    """An index that applies ``index`` to ``axis`` of an NCHW array."""
    return (slice(None),) * axis + (index,)


@functools.lru_cache(maxsize=256)
def _pass_plan(kernel, stride, pad, size, out_len):
    """How one pooling pass visits its taps along an axis of length ``size``.

    Returns ``(paired, forward, backward, unread)``. ``paired``: taps 0 and 1 both
    reach every output, so the first step combines them. ``forward`` and ``backward``
    list per tap ``(t, out_slice, in_slice, fresh)``, where ``fresh`` holds the
    output (forward) or input (backward) positions of this tap that no earlier tap
    reached, or is None when that is all of them. ``unread``: inputs no window reads.
    Taps that read only padding are left out.
    """
    taps = [(t, *reach) for t, reach in enumerate(tap_ranges(kernel, stride, 1, pad, size, out_len))
            if reach is not None]
    paired = (len(taps) > 1 and [t for t, _, _ in taps[:2]] == [0, 1]
              and all(out_at == slice(0, out_len) for _, out_at, _ in taps[:2]))

    def visits(length, side):
        seen, steps = np.zeros(length, bool), []
        for t, out_at, in_at in taps:
            at = (out_at, in_at)[side]
            positions = np.arange(length)[at]
            fresh = positions[~seen[at]]
            steps.append((t, out_at, in_at, None if len(fresh) == len(positions) else fresh))
            seen[at] = True
        return steps, np.flatnonzero(~seen)

    return paired, visits(out_len, 0)[0], *visits(size, 1)


def _max_and_tap(x, axis, plan, out_len):
    """Maximum over the taps along ``axis`` and the first tap holding it (uint8),
    following a :func:`_pass_plan`; positions a tap does not reach compare as -inf.
    Results have (C, H, W, N) memory."""
    paired, steps, _, _ = plan
    shape = list(x.shape)
    shape[axis] = out_len
    best = empty_chwn(*shape, x.dtype)
    tap = empty_chwn(*shape, np.uint8)
    if paired:
        first, second = (x[_along(axis, in_at)] for _, _, in_at, _ in steps[:2])
        np.maximum(first, second, out=best)
        np.greater(second, first, out=tap.view(bool))  # strict: on ties the earlier tap stays
        steps = steps[2:]
    for t, out_at, in_at, fresh in steps:
        out_at, in_at = _along(axis, out_at), _along(axis, in_at)
        if fresh is None:  # no earlier tap reached these outputs
            best[out_at], tap[out_at] = x[in_at], t
            continue
        if len(fresh):  # outputs that only padding reached so far
            best[_along(axis, fresh)], tap[_along(axis, fresh)] = -np.inf, t
        sub, sub_tap = best[out_at], tap[out_at]
        larger = np.greater(x[in_at], sub).view(np.uint8)
        np.maximum(sub, x[in_at], out=sub)
        # taps come in increasing order, so "t where larger" is a maximum
        np.maximum(sub_tap, larger * np.uint8(t), out=sub_tap)
    return best, tap


def _route(grad, tap, axis, plan, in_len):
    """Send each element of ``grad`` to the input its winning tap read along ``axis``
    (the adjoint of :func:`_max_and_tap`), adding where windows overlap."""
    _, _, steps, unread = plan
    shape = list(grad.shape)
    shape[axis] = in_len
    dx = empty_chwn(*shape, grad.dtype)
    for t, out_at, in_at, fresh in steps:
        out_at, in_at = _along(axis, out_at), _along(axis, in_at)
        won = tap[out_at] == t
        if fresh is None:  # no earlier tap wrote these inputs
            np.multiply(grad[out_at], won, out=dx[in_at])
            continue
        if len(fresh):
            dx[_along(axis, fresh)] = 0
        dx[in_at] += grad[out_at] * won
    if len(unread):
        dx[_along(axis, unread)] = 0
    return dx


class AvgPool2D(_Pool2D):
    """Mean over each window; zero padding is counted in the divisor, as in
    PyTorch's default (``count_include_pad=True``); windows that ``ceil_mode``
    lets run past the padding count only their in-bounds part.

    Forward adds one strided view per kernel offset; backward spreads the
    gradient separably (over rows, then columns: kh + kw passes), and the divisor
    is the product of the window's extents along each axis.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo), Ho = floor((H + 2 * pad_h - kh) / stride_h) + 1
             (ceiling with ``ceil_mode``), Wo likewise
    """

    def _divisor(self, x_shape, out_hw, dtype):
        """Per-pixel window size (1, 1, Ho, Wo): kh*kw except for ceil-mode edge windows,
        which count only the part inside the input and its padding."""
        extents = []
        for k, s, pad, size, out in zip(self.kernel_size, self.stride, self.pads[::2], x_shape[2:], out_hw):
            start = s * np.arange(out) - pad
            extents.append(np.minimum(start + k, size + pad) - start)
        return np.multiply.outer(*extents).astype(dtype)[None, None]

    def forward(self, x):
        self._check_input(x, (None, None, None))
        out_hw = self._geometry(*x.shape[2:])
        rows, cols = self._plans(x.shape, out_hw)
        out = empty_chwn(x.shape[0], x.shape[1], *out_hw, x.dtype)
        # one strided addition per kernel offset, over the outputs whose offset lies in the input
        offsets = [(slice(None), slice(None), r_out, c_out) + (slice(None), slice(None), r_in, c_in)
                   for _, r_out, r_in, _ in rows[1] for _, c_out, c_in, _ in cols[1]]
        whole = (slice(None), slice(None), slice(0, out_hw[0]), slice(0, out_hw[1]))
        if offsets[0][:4] == whole:
            out[...] = x[offsets.pop(0)[4:]]
        else:
            out.fill(0)
        for offset in offsets:
            out[offset[:4]] += x[offset[4:]]
        divisor = self._divisor(x.shape, out_hw, x.dtype)
        out /= divisor
        self._save_for_backward(x.shape, divisor)
        return out

    def backward(self, dout):
        x_shape, divisor = self._saved()
        dout = self._check_dout(dout, x_shape[:2] + divisor.shape[2:])
        rows, cols = self._plans(x_shape, divisor.shape[2:])
        # every element of a window receives an equal share of the window's gradient
        share = dout / divisor
        return _spread(_spread(share, 2, rows, x_shape[2]), 3, cols, x_shape[3]), {}


def _spread(grad, axis, plan, in_len):
    """Each input receives the sum of the gradients of the outputs whose taps read it
    along ``axis`` (the adjoint of a sum over those taps)."""
    _, _, steps, unread = plan
    shape = list(grad.shape)
    shape[axis] = in_len
    dx = empty_chwn(*shape, grad.dtype)
    for _, out_at, in_at, fresh in steps:
        out_at, in_at = _along(axis, out_at), _along(axis, in_at)
        if fresh is None:
            dx[in_at] = grad[out_at]
            continue
        if len(fresh):
            dx[_along(axis, fresh)] = 0
        dx[in_at] += grad[out_at]
    if len(unread):
        dx[_along(axis, unread)] = 0
    return dx


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
        dout = self._check_dout(dout, x_shape[:2])
        scale = dout.dtype.type(1.0 / (x_shape[2] * x_shape[3]))
        dx = empty_chwn(*x_shape, dout.dtype)
        dx[...] = (dout * scale)[:, :, None, None]
        return dx, {}
