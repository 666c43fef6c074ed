"""Unfold (im2col) and fold (col2im) kernels shared by every convolution-like layer.

Pure functions, no state. Images are NCHW arrays of any strides. The unfolded
matrix is laid out channel-major, ``(C, kh, kw, N, Ho, Wo)``: reshaped to
``(C*kh*kw, N*Ho*Wo)`` it is the right operand of one matrix product with the
``(C_out, C*kh*kw)`` weight, its rows read contiguously, and the product comes out
as ``(C_out, N, Ho, Wo)`` memory, which is returned to the caller as an NCHW view.
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
    if room < 0:
        return 0
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def pad_nchw(x, pads, value=0.0):
    """Pad H and W of an NCHW array by ``pads = (top, bottom, left, right)``.

    The result has channel-major ``(C, N, Hp, Wp)`` memory (returned as an NCHW
    view), the layout the unfolding reads fastest. Without padding, ``x`` itself.
    """
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    buf = np.full((c, n, h + top + bottom, w + left + right), value, dtype=x.dtype)
    buf[:, :, top:top + h, left:left + w] = x.transpose(1, 0, 2, 3)
    return buf.transpose(1, 0, 2, 3)


def window_view(xp, kernel, stride, dilation, out_hw):
    """Read-only strided view ``(N, C, Ho, Wo, kh, kw)`` of every window of ``xp``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, shape=(n, c, ho, wo, kh, kw),
                      strides=(s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def offset_slices(kernel, stride, dilation, out_hw):
    """Yield ``(i, j, (rows, cols))``: for kernel offset (i, j), the slices of the
    padded input that hold the element each output pixel reads at that offset."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            yield i, j, (rows, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def im2col(xp, kernel, stride, dilation, out_hw, out=None):
    """Unfold padded ``xp`` (N, C, Hp, Wp) into ``(C, kh, kw, N, Ho, Wo)``.

    ``out`` may be a preallocated buffer of that shape and dtype (a reused
    workspace). A 1x1 kernel with stride 1 needs no unfolding: the result is a
    view of ``xp`` whenever its memory is already channel-major.
    """
    n, c = xp.shape[:2]
    (kh, kw), (ho, wo) = kernel, out_hw
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and out is None:
        return xp.transpose(1, 0, 2, 3)[:, None, None, :, :ho, :wo]
    if out is None:
        out = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    # (N, C, Ho, Wo, kh, kw) -> (C, kh, kw, N, Ho, Wo): rows of Wo stay contiguous
    np.copyto(out, window_view(xp, kernel, stride, dilation, out_hw).transpose(1, 4, 5, 0, 2, 3))
    return out


def col2im(cols, padded_hw, kernel, stride, dilation):
    """Fold ``cols`` (C, kh, kw, N, Ho, Wo) back into a padded image: the adjoint of im2col.

    Every input element receives the sum of the columns that read it, done as
    kh*kw strided slice-additions. Returns NCHW ``(N, C, Hp, Wp)`` backed by
    channel-major memory.
    """
    c, kh, kw, n, ho, wo = cols.shape
    hp, wp = padded_hw
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and (ho, wo) == (hp, wp):
        return cols[:, 0, 0].transpose(1, 0, 2, 3)
    dx = np.zeros((c, n, hp, wp), dtype=cols.dtype)
    for i, j, (rows, columns) in offset_slices(kernel, stride, dilation, (ho, wo)):
        dx[:, :, rows, columns] += cols[:, i, j]
    return dx.transpose(1, 0, 2, 3)


def as_pair(value, name, layer):
    """An int or a pair of ints -> a tuple of two ints (validated positive)."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return tuple(int(v) for v in pair)


def as_padding(value, layer):
    """An int or a pair (symmetric per axis) -> (top, bottom, left, right), non-negative."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair) or min(pair) < 0:
        raise ValueError(f"{layer}: padding must be a non-negative int or pair of ints, "
                         f"'same' or 'valid', got {value!r}")
    return (int(pair[0]), int(pair[0]), int(pair[1]), int(pair[1]))
