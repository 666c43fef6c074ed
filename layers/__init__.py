"""npnet layers: each an explicit forward and backward pass."""
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import DtypeWarning, Layer, grad_enabled, no_grad
from .conv import Conv2D
from .linear import Dense
from .losses import MSELoss, SoftmaxCrossEntropy
from .normalization import BatchNorm1D, BatchNorm2D
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .regularization import Dropout
from .reshape import Flatten

__all__ = ["Layer", "DtypeWarning", "no_grad", "grad_enabled", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout",
           "BatchNorm1D", "BatchNorm2D", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
           "SoftmaxCrossEntropy", "MSELoss"]
