"""The same network in PyTorch, for benchmarks only: each npnet layer becomes its torch.nn
twin with identical weights. PyTorch is an optional benchmark extra, never a dependency."""
import numpy as np
import torch
from torch import nn

import layers as L
from models import Sequential


def _copy(module, layer):
    """Copy parameters and buffers (BatchNorm's running statistics) into ``module``."""
    with torch.no_grad():
        for name, value in {**layer.params, **layer.buffers}.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module


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
    raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
