"""The same network in PyTorch, for benchmarks only: each npnet layer becomes its torch.nn
twin with identical weights. PyTorch is an optional benchmark extra, never a dependency."""
import numpy as np
import torch
from torch import nn

import layers as L
from models import Concat, Sequential


def _copy(module, layer):
    """Copy parameters and buffers (BatchNorm's running statistics) into ``module``."""
    with torch.no_grad():
        for name, value in {**layer.params, **layer.buffers}.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module


class TorchConcat(nn.Module):
    """``torch.cat([branch(x) for branch in branches], dim)``: the twin of ``models.Concat``."""

    def __init__(self, branches, dim):
        super().__init__()
        self.dim = dim
        for i, branch in enumerate(branches):  # named "0", "1", ... as npnet names them
            self.add_module(str(i), branch)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], self.dim)


def to_torch(layer):
    """An ``nn.Module`` computing what the npnet ``layer`` computes."""
    if isinstance(layer, Sequential):
        return nn.Sequential(*[to_torch(child) for child in layer.layers])
    if isinstance(layer, L.Conv2D):
        padding = layer.padding if isinstance(layer.padding, str) else tuple(layer.pads[::2])
        return _copy(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                               padding, layer.dilation, layer.groups, layer.use_bias), layer)
    if isinstance(layer, L.Dense):
        return _copy(nn.Linear(layer.in_features, layer.out_features, layer.use_bias), layer)
    if isinstance(layer, (L.BatchNorm1D, L.BatchNorm2D)):
        cls = nn.BatchNorm1d if isinstance(layer, L.BatchNorm1D) else nn.BatchNorm2d
        return _copy(cls(layer.num_features, layer.eps, layer.momentum), layer)
    if isinstance(layer, L.MaxPool2D):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, tuple(layer.pads[::2]), ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.AvgPool2D):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, tuple(layer.pads[::2]), ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.GlobalAvgPool2D):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    simple = {L.ReLU: nn.ReLU, L.Flatten: nn.Flatten, L.Sigmoid: nn.Sigmoid, L.Tanh: nn.Tanh}
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, L.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, Concat):
        return TorchConcat([to_torch(branch) for branch in layer.branches], layer.axis)
    if isinstance(layer, L.ConvTranspose2D):
        return _copy(nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                        layer.padding, layer.output_padding, layer.groups, layer.use_bias,
                                        layer.dilation), layer)
    if isinstance(layer, L.Upsample2D):
        size = None if layer.size is None else tuple(layer.size)
        scale = None if layer.scale_factor is None else tuple(layer.scale_factor)
        return nn.Upsample(size, scale, layer.mode, layer.align_corners)
    if isinstance(layer, L.ZeroPad2D):
        return nn.ZeroPad2d(layer.padding)
    if isinstance(layer, L.LayerNorm):
        return _copy(nn.LayerNorm(layer.normalized_shape, layer.eps, layer.elementwise_affine, layer.use_bias),
                     layer)
    if isinstance(layer, L.InstanceNorm2D):
        return _copy(nn.InstanceNorm2d(layer.num_channels, layer.eps, affine=layer.affine), layer)
    if isinstance(layer, L.GroupNorm):
        return _copy(nn.GroupNorm(layer.num_groups, layer.num_channels, layer.eps, layer.affine), layer)
    if isinstance(layer, L.ELU):
        return nn.ELU(layer.alpha)
    if isinstance(layer, L.GELU):
        return nn.GELU(layer.approximate)
    if isinstance(layer, L.Softplus):
        return nn.Softplus(layer.beta, layer.threshold)
    if isinstance(layer, L.PReLU):
        return _copy(nn.PReLU(layer.num_slopes, layer.init), layer)
    if isinstance(layer, L.LogSoftmax):
        return nn.LogSoftmax(layer.axis)
    if isinstance(layer, L.Dropout2D):
        return nn.Dropout2d(layer.p)
    simple_new = {L.Hardswish: nn.Hardswish, L.SiLU: nn.SiLU}
    if type(layer) in simple_new:
        return simple_new[type(layer)]()
    raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
