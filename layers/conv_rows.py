"""Conv2D by row unfolding: the products of one batch slice (see ``Conv2D``, ``algorithm="rows"``).

The input is unfolded along W only, ``u = (rows, C, kw, Wo, N)`` (:func:`row_unfold`), so
that the ``kh`` input rows one row of outputs reads are one contiguous
``(kh * C * kw, Wo * N)`` block of ``u``; the weight is reordered to match,
``(C_out, kh * C * kw)``. Groups and dilation are not supported here.
"""
import numpy as np

from .im2col import row_unfold, row_windows


def weight_rows(weight):
    """``(C_out, C, kh, kw)`` -> ``(C_out, kh * C * kw)``, the row order of the unfolding."""
    co = weight.shape[0]
    return weight.transpose(0, 2, 1, 3).reshape(co, -1)


def flipped_rows(weight):
    """The weight of the input gradient as a correlation: flipped in both spatial axes,
    channel axes swapped, as ``(C, kh * C_out * kw)``."""
    c = weight.shape[1]
    return weight[:, :, ::-1, ::-1].transpose(1, 2, 0, 3).reshape(c, -1)


def unfolded_shape(x_shape, kernel, stride, out_hw):
    """Shape of the row unfolding of an (n, C, H, W) input: ``(rows, C, kw, Wo, n)``, where
    ``rows = (Ho - 1) * stride_h + kh`` are the padded rows the output rows reach."""
    n, c = x_shape[:2]
    return ((out_hw[0] - 1) * stride[0] + kernel[0], c, kernel[1], out_hw[1], n)


def unfold_rows(x, kernel, stride, pads, out_hw, out=None):
    """:func:`row_unfold` of NCHW ``x`` into :func:`unfolded_shape`."""
    rows = unfolded_shape(x.shape, kernel, stride, out_hw)[0]
    return row_unfold(x, kernel[1], stride[1], pads, out_hw, rows, out=out)


def forward(u, w_rows, kernel, stride, out_hw):
    """Output rows of the slice unfolded in ``u``: ``(C_out, Ho, Wo * n)`` memory, one
    ``(C_out, kh*C*kw) @ (kh*C*kw, Wo*n)`` product per output row."""
    ho, wo, n = out_hw[0], out_hw[1], u.shape[-1]
    out = np.empty((w_rows.shape[0], ho, wo * n), dtype=u.dtype)
    np.matmul(w_rows, row_windows(u, kernel[0], stride[0], ho), out=out.transpose(1, 0, 2))
    return out


def weight_grad(u, dout, kernel, stride, block_bytes):
    """``(C_out, kh * C * kw)`` gradient of :func:`weight_rows` from the slice's unfolding and
    its upstream gradient ``dout`` (n, C_out, Ho, Wo): one product per output row, summed
    (the rows' windows overlap), in blocks of rows whose products fit ``block_bytes``."""
    n, co, ho, wo = dout.shape
    # (n, C_out, Ho, Wo) -> (Ho, C_out, Wo * n): free when dout has batch-innermost memory
    drows = dout.transpose(2, 1, 3, 0).reshape(ho, co, wo * n)
    windows = row_windows(u, kernel[0], stride[0], ho)
    block = max(1, min(ho, block_bytes // max(1, windows.shape[1] * co * u.itemsize)))
    total = None
    for y in range(0, ho, block):
        part = np.matmul(windows[y:y + block], drows[y:y + block].transpose(0, 2, 1)).sum(axis=0)
        total = part if total is None else total + part
    return total.T


def input_grad(dout, flipped, kernel, pads, in_hw, out=None):
    """dx (n, C, H, W), batch-innermost memory, of a stride-1 convolution: the upstream
    gradient padded by ``k - 1 - pad`` (all non-negative) and unfolded along W, times
    :func:`flipped_rows`, one product per input row. ``out``: a workspace for that
    unfolding, ``(H + kh - 1, C_out, kw, W, n)``."""
    (kh, kw), (h, w), n = kernel, in_hw, dout.shape[0]
    top, bottom, left, right = pads
    flipped_pads = (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)
    du = row_unfold(dout, kw, 1, flipped_pads, (h, w), h + kh - 1, out=out)
    c = flipped.shape[0]
    dx = np.empty((c, h, w * n), dtype=dout.dtype)  # (C, H, W, n)
    np.matmul(flipped, row_windows(du, kh, 1, h), out=dx.transpose(1, 0, 2))
    return dx.reshape(c, h, w, n).transpose(3, 0, 1, 2)
