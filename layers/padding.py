"""Padding layers."""
import numpy as np

from .base import Layer
from .im2col import pad_nchw
from .validation import check_size


class ZeroPad2D(Layer):
    """Pad the borders of images with zeros (PyTorch's ``nn.ZeroPad2d``).

    ``padding`` is one int for all four sides or ``(left, right, top, bottom)``, PyTorch's order.
    Backward crops the upstream gradient back to the input's size.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, H + top + bottom, W + left + right)
    """

    def __init__(self, padding):
        super().__init__()
        sides = (padding,) * 4 if np.isscalar(padding) else tuple(padding)
        if len(sides) != 4:
            raise ValueError(f"ZeroPad2D: padding must be an int or (left, right, top, bottom), got {padding!r}")
        names = ("left", "right", "top", "bottom")
        self.padding = tuple(check_size("ZeroPad2D", f"padding ({side})", v, minimum=0)
                             for side, v in zip(names, sides))

    def get_config(self):
        return {"padding": list(self.padding)}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"ZeroPad2D: expected per-sample shape (C, H, W), got {tuple(input_shape)}")
        left, right, top, bottom = self.padding
        c, h, w = input_shape
        return (c, h + top + bottom, w + left + right)

    def cost(self, input_shape):
        return {"forward_flops": 0, "backward_flops": 0, "cache_bytes": 0}

    def forward(self, x):
        self._check_input(x, ndim=4)
        left, right, top, bottom = self.padding
        self._save_for_backward(x.shape)
        out = pad_nchw(x, (top, bottom, left, right))
        return x.copy() if out is x else out

    def backward(self, dout):
        (shape,) = self._saved()
        left, right, top, bottom = self.padding
        _, _, h, w = shape
        dout = self._check_dout(dout, shape[:2] + (h + top + bottom, w + left + right))
        return dout[:, :, top:top + h, left:left + w], {}
