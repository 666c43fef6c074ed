"""npnet layers: each an explicit forward and backward pass."""
from .activations import (ELU, GELU, Hardswish, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, SiLU, Softmax,
                          Softplus, Tanh)
from .base import DtypeWarning, Layer, grad_enabled, no_grad
from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .linear import Dense
from .losses import BCEWithLogits, HuberLoss, MSELoss, NLLLoss, SmoothL1Loss, SoftmaxCrossEntropy
from .normalization import BatchNorm1D, BatchNorm2D, GroupNorm, InstanceNorm2D, LayerNorm
from .padding import ZeroPad2D
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .regularization import Dropout, Dropout2D
from .reshape import Flatten
from .upsampling import Upsample2D

__all__ = ["Layer", "DtypeWarning", "no_grad", "grad_enabled", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout",
           "BatchNorm1D", "BatchNorm2D", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
           "SoftmaxCrossEntropy", "MSELoss",
           "ConvTranspose2D", "Upsample2D", "ZeroPad2D", "LayerNorm", "GroupNorm", "InstanceNorm2D",
           "ELU", "GELU", "Softplus", "PReLU", "Hardswish", "SiLU", "LogSoftmax", "Dropout2D",
           "BCEWithLogits", "NLLLoss", "HuberLoss", "SmoothL1Loss"]
