"""Unfold (im2col) and fold (col2im) kernels shared by every convolution-like layer.

Pure functions, no state. Images are NCHW arrays of any strides; the arrays made
here keep their memory batch-innermost, ``(C, H, W, N)``, and are handed out as
NCHW views of it. The unfolded matrix is ``(C, kh, kw, Ho, Wo, N)``: reshaped to
``(C*kh*kw, Ho*Wo*N)`` it is the right operand of one matrix product with the
``(C_out, C*kh*kw)`` weight, and the product comes out as ``(C_out, Ho, Wo, N)``
memory, the same layout again. With the batch innermost, every copy and every
strided addition below runs over whole rows of ``Wo*N`` contiguous elements
instead of rows of ``Wo``, which is what keeps numpy's per-row overhead small.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided
def output_size(size, kernel, stride, pad_before, pad_after, dilation=1, ceil_mode=False):
    """Output length of a sliding window over ``size`` padded elements.

    floor((size + pads - d*(k-1) - 1) / s) + 1, or the ceiling with ``ceil_mode``
    (PyTorch's and Caffe's rule: the last window must start inside the input or
    the leading padding). Zero when the window does not fit.
    """
    room = size + pad_before + pad_after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return room // stride + 1 if room >= 0 else 0
    # ceil mode: a window may run past the end (by less than a stride) when it starts inside
    out = (room + stride - 1) // stride + 1
    if out > 0 and (out - 1) * stride >= size + pad_before:
        out -= 1
    return max(out, 0)


def empty_chwn(n, c, h, w, dtype, fill=None):
    """An NCHW array of shape (n, c, h, w) backed by (C, H, W, N) memory."""
    if fill is None:
        buf = np.empty((c, h, w, n), dtype=dtype)
    elif fill == 0:
        buf = np.zeros((c, h, w, n), dtype=dtype)
    else:
        buf = np.full((c, h, w, n), fill, dtype=dtype)
    return buf.transpose(3, 0, 1, 2)


def is_chwn(x):
    """True when the NCHW array ``x`` is contiguous (C, H, W, N) memory."""
    return x.transpose(1, 2, 3, 0).flags.c_contiguous


def pad_nchw(x, pads, value=0.0):
    """Pad H and W of an NCHW array by ``pads = (top, bottom, left, right)``.

    The result has batch-innermost (C, H, W, N) memory. ``x`` itself comes back
    when there is nothing to pad and it already has that layout.
    """
    top, bottom, left, right = pads
    if not (top or bottom or left or right) and is_chwn(x):
        return x
    n, c, h, w = x.shape
    fill = value if (top or bottom or left or right) else None
    xp = empty_chwn(n, c, h + top + bottom, w + left + right, x.dtype, fill)
    xp[:, :, top:top + h, left:left + w] = x
    return xp


def window_view(xp, kernel, stride, dilation, out_hw):
    """Read-only strided view ``(N, C, Ho, Wo, kh, kw)`` of every window of ``xp``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, shape=(n, c, ho, wo, kh, kw),
                      strides=(s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def tap_slices(kernel, stride, dilation, out_len):
    """For each tap t of a 1-D kernel, the slice of the padded axis that holds the
    element every output position reads at that tap."""
    return [slice(t * dilation, t * dilation + stride * (out_len - 1) + 1, stride) for t in range(kernel)]


def tap_ranges(kernel, stride, dilation, pad_before, size, out_len):
    """For each tap t of a 1-D kernel over an unpadded axis of length ``size``:
    ``(out_slice, in_slice)``, the output positions whose tap t falls inside the
    input (not in the padding) and the input elements they read, or None when
    every output position reads padding at that tap.

    Output position o reads input s*o + d*t - pad_before.
    """
    ranges = []
    for t in range(kernel):
        shift = dilation * t - pad_before
        lo = max(0, -(shift // stride))  # first o with s*o + shift >= 0
        hi = min(out_len, (size - 1 - shift) // stride + 1)
        if hi <= lo:
            ranges.append(None)
            continue
        first = stride * lo + shift
        ranges.append((slice(lo, hi), slice(first, first + stride * (hi - lo - 1) + 1, stride)))
    return ranges


def offset_slices(kernel, stride, dilation, out_hw):
    """Yield ``(i, j, (rows, cols))``: for kernel offset (i, j), the slices of the
    padded input that hold the element each output pixel reads at that offset."""
    rows = tap_slices(kernel[0], stride[0], dilation[0], out_hw[0])
    cols = tap_slices(kernel[1], stride[1], dilation[1], out_hw[1])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            yield i, j, (r, c)


def im2col(xp, kernel, stride, dilation, out_hw, out=None):
    """Unfold padded ``xp`` (N, C, Hp, Wp) into ``(C, kh, kw, Ho, Wo, N)``.

    ``out`` may be a preallocated buffer of that shape and dtype (a reused
    workspace). A 1x1 kernel with stride 1 needs no unfolding: the result is a
    view of ``xp`` (contiguous when ``xp`` has (C, H, W, N) memory).
    """
    n, c = xp.shape[:2]
    (kh, kw), (ho, wo) = kernel, out_hw
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and out is None:
        return xp.transpose(1, 2, 3, 0)[:, None, None, :ho, :wo]
    if out is None:
        out = np.empty((c, kh, kw, ho, wo, n), dtype=xp.dtype)
    # (N, C, Ho, Wo, kh, kw) -> (C, kh, kw, Ho, Wo, N)
    np.copyto(out, window_view(xp, kernel, stride, dilation, out_hw).transpose(1, 4, 5, 2, 3, 0))
    return out


def row_unfold(x, kw, stride_w, pads, out_hw, rows, out=None):
    """Unfold NCHW ``x`` along W only: ``(rows, C, kw, Wo, N)`` with
    ``u[r, c, j, o, n] = x_padded[n, c, r, stride_w * o + j]``.

    ``pads = (top, bottom, left, right)``; ``rows`` padded rows are kept (those the
    windows reach). Block ``u[r:r + kh]`` is then one contiguous
    ``(kh * C * kw, Wo * N)`` matrix: every input a row of outputs reads (see
    :func:`row_windows`). Only ``kw`` copies of the input are made, where a full
    im2col makes ``kh * kw``.
    """
    n, c, h, w = x.shape
    top, _, left, _ = pads
    wo = out_hw[1]
    if out is None:
        out = np.empty((rows, c, kw, wo, n), dtype=x.dtype)
    first, last = max(0, min(top, rows)), max(0, min(top + h, rows))  # rows holding input
    out[:first] = 0
    out[last:] = 0
    xh = x.transpose(2, 1, 3, 0)[first - top:last - top]  # (H, C, W, N)
    for j, reach in enumerate(tap_ranges(kw, stride_w, 1, left, w, wo)):
        if reach is None:
            out[first:last, :, j] = 0
            continue
        dst, src = reach
        lo, hi = dst.start, dst.stop
        out[first:last, :, j, :lo] = 0
        out[first:last, :, j, hi:] = 0
        out[first:last, :, j, lo:hi] = xh[:, :, src]
    return out


def row_windows(u, kh, stride_h, out_h):
    """Read-only ``(Ho, kh * C * kw, Wo * N)`` view of :func:`row_unfold`'s (contiguous)
    result: for output row y, the overlapping block of rows ``stride_h * y .. + kh``."""
    rows, c, kw, wo, n = u.shape
    return as_strided(u, shape=(out_h, kh * c * kw, wo * n),
                      strides=(stride_h * u.strides[0], u.strides[2], u.itemsize), writeable=False)


def col2im(cols, padded_hw, kernel, stride, dilation):
    """Fold ``cols`` (C, kh, kw, Ho, Wo, N) back into a padded image: the adjoint of im2col.

    Every input element receives the sum of the columns that read it, done as
    kh*kw strided slice-additions. Returns NCHW ``(N, C, Hp, Wp)`` backed by
    (C, Hp, Wp, N) memory.
    """
    c, kh, kw, ho, wo, n = cols.shape
    hp, wp = padded_hw
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and (ho, wo) == (hp, wp):
        return cols[:, 0, 0].transpose(3, 0, 1, 2)
    dx = np.zeros((c, hp, wp, n), dtype=cols.dtype)
    for i, j, (rows, columns) in offset_slices(kernel, stride, dilation, (ho, wo)):
        dx[:, rows, columns] += cols[:, i, j]
    return dx.transpose(3, 0, 1, 2)


def as_pair(value, name, layer):
    """An int or a pair of ints -> a tuple of two ints (validated positive)."""
    pair = (value, value) if np.isscalar(value) or value is None else tuple(value)
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return tuple(int(v) for v in pair)


def as_padding(value, layer):
    """An int or a pair (symmetric per axis) -> (top, bottom, left, right), non-negative."""
    pair = (value, value) if np.isscalar(value) or value is None else tuple(value)
    if len(pair) != 2 or not all(_is_int(v) for v in pair) or min(pair) < 0:
        raise ValueError(f"{layer}: padding must be a non-negative int or pair of ints, "
                         f"'same' or 'valid', got {value!r}")
    return (int(pair[0]), int(pair[0]), int(pair[1]), int(pair[1]))


def _is_int(value):
    """An integer that is not a bool (``True`` is not a size)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
