"""Upsampling of images by nearest-neighbour or bilinear interpolation, PyTorch's conventions."""
import math

import numpy as np

from .base import Layer
from .validation import check_float, check_size

MODES = ("nearest", "bilinear")


def _pair(value, name, check):
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"Upsample2D: {name} must be a number or a pair, got {value!r}")
    return tuple(check("Upsample2D", name, v) for v in pair)


def _nearest_index(in_size, out_size, scale_factor):
    """Source index of each output position: ``floor(dst * scale)``, with PyTorch's float32
    scale (``1 / scale_factor`` when given, else ``in / out``), clamped to the input. As in
    PyTorch, an axis whose size is kept is copied and one whose size doubles takes
    ``dst // 2``, whatever the (fractional) factor that gave those sizes."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) // 2
    scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _bilinear_matrix(in_size, out_size, scale_factor, align_corners):
    """(out_size, in_size) matrix of linear-interpolation weights along one axis (two
    non-zeros per row; PyTorch's source-index rule for either ``align_corners``)."""
    dst = np.arange(out_size, dtype=np.float64)
    if out_size == in_size:  # a kept size is copied, as PyTorch does, whatever the factor
        return np.eye(out_size)
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    else:
        scale = 1.0 / scale_factor if scale_factor else in_size / out_size
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, i0), 1.0 - frac)
    np.add.at(matrix, (rows, i1), frac)
    return matrix


class Upsample2D(Layer):
    """Resize images by ``scale_factor`` or to ``size`` (PyTorch's ``nn.Upsample`` for 4-D input).

    ``mode="nearest"`` copies the source pixel ``floor(dst / scale_factor)`` (PyTorch's
    ``"nearest"``); ``mode="bilinear"`` interpolates between the two nearest source pixels
    along each axis. With ``align_corners=True`` the corner pixels of input and output are
    aligned, ``src = dst * (in - 1) / (out - 1)``; with ``False`` (the default, as in
    PyTorch) the pixel areas are, ``src = max((dst + 0.5) / scale_factor - 0.5, 0)``. As in
    PyTorch, an axis whose size a fractional factor keeps is copied, and in nearest mode one
    whose size it doubles takes ``dst // 2``.

    Both modes are linear maps applied separably: ``out = A_h @ x @ A_w^T`` and
    ``dx = A_h^T @ dout @ A_w`` with (Ho, H) and (Wo, W) interpolation matrices. Nearest with
    an integer ``scale_factor`` is a plain repeat (backward: a sum over each block).

    Shape:
        x:   (N, C, H, W)
        out: (N, C, Ho, Wo) with Ho = floor(H * scale_factor_h) (Wo likewise), or ``size``
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample2D: give exactly one of size and scale_factor")
        if mode not in MODES:
            raise ValueError(f"Upsample2D: mode must be one of {MODES}, got {mode!r}")
        if align_corners is not None and mode != "bilinear":
            raise ValueError("Upsample2D: align_corners applies to mode='bilinear' only")
        self.size = None if size is None else _pair(size, "size", check_size)
        self.scale_factor = None if scale_factor is None else _pair(
            scale_factor, "scale_factor", lambda owner, name, v: check_float(owner, name, v, low=0.0, low_open=True))
        self.mode = mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self._matrices = {}

    def get_config(self):
        return {"size": None if self.size is None else list(self.size),
                "scale_factor": None if self.scale_factor is None else list(self.scale_factor),
                "mode": self.mode, "align_corners": self.align_corners}

    def _out_hw(self, h, w):
        if self.size is not None:
            return self.size
        ho, wo = (int(math.floor(n * s)) for n, s in zip((h, w), self.scale_factor))
        if ho <= 0 or wo <= 0:
            raise ValueError(f"Upsample2D: scale_factor {self.scale_factor} gives an empty output for "
                             f"input size {(h, w)}")
        return ho, wo

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Upsample2D: expected per-sample shape (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],) + tuple(self._out_hw(*input_shape[1:]))

    def _repeat(self):
        """The integer factors of a nearest upsampling by whole numbers, else None."""
        if self.mode != "nearest" or self.scale_factor is None:
            return None
        if not all(float(s).is_integer() for s in self.scale_factor):
            return None
        return tuple(int(s) for s in self.scale_factor)

    def cost(self, input_shape):
        c, h, w = input_shape
        ho, wo = self._out_hw(h, w)
        if self._repeat():
            return {"forward_flops": 0, "backward_flops": c * ho * wo, "cache_bytes": 0}
        # x @ A_w^T: C*H*Wo*W multiply-adds, then A_h @ (.): C*Ho*Wo*H; backward the transposes
        macs = c * (h * wo * w + ho * wo * h)
        return {"forward_flops": 2 * macs, "backward_flops": 2 * macs, "cache_bytes": 0}

    def _axis_matrix(self, in_size, out_size, axis, dtype):
        """The (out, in) interpolation matrix of one axis, built once per size and dtype."""
        key = (in_size, out_size, axis, np.dtype(dtype).str)
        matrix = self._matrices.get(key)
        if matrix is None:
            factor = self.scale_factor[axis] if self.scale_factor is not None else None
            if self.mode == "nearest":
                matrix = np.zeros((out_size, in_size))
                matrix[np.arange(out_size), _nearest_index(in_size, out_size, factor)] = 1.0
            else:
                matrix = _bilinear_matrix(in_size, out_size, factor, bool(self.align_corners))
            matrix = self._matrices[key] = matrix.astype(dtype)
        return matrix

    def forward(self, x):
        self._check_input(x, ndim=4)
        n, c, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        self._save_for_backward(x.shape)
        repeat = self._repeat()
        if repeat:
            sh, sw = repeat
            # (N, C, H, 1, W, 1) broadcast to (N, C, H, sh, W, sw) -> (N, C, H*sh, W*sw)
            return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, ho, wo)
        a_h = self._axis_matrix(h, ho, 0, x.dtype)
        a_w = self._axis_matrix(w, wo, 1, x.dtype)
        return np.matmul(a_h, x @ a_w.T)

    def backward(self, dout):
        (shape,) = self._saved()
        n, c, h, w = shape
        ho, wo = self._out_hw(h, w)
        dout = self._check_dout(dout, (n, c, ho, wo))
        repeat = self._repeat()
        if repeat:
            sh, sw = repeat
            return dout.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5)), {}
        a_h = self._axis_matrix(h, ho, 0, dout.dtype)
        a_w = self._axis_matrix(w, wo, 1, dout.dtype)
        return np.matmul(a_h.T, dout @ a_w), {}
