"""Named architectures: builder functions returning a ``Sequential``.

Every builder takes ``input_shape`` (C, H, W), ``num_classes`` and ``rng`` (a
Generator or seed for initialisation and dropout).
"""
import math

from layers import (AvgPool2D, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
                    GroupNorm, MaxPool2D, ReLU)
from layers.init import make_rng

from .branches import Residual
from .sequential import Sequential


def _classifier(features, input_shape, rng, *head):
    """Append Flatten and the dense head; the first Dense's input size is inferred."""
    flat = math.prod(Sequential(features).output_shape(input_shape))
    layers = list(features) + [Flatten()]
    for make in head:
        layer = make(flat, rng)
        layers.append(layer)
        if isinstance(layer, Dense):
            flat = layer.out_features
    return Sequential(layers, input_shape=input_shape)


def lenet(input_shape=(1, 28, 28), num_classes=10, rng=None):
    """Caffe's LeNet: conv20 5x5 -> max-pool 2 -> conv50 5x5 -> max-pool 2 -> fc500 -> ReLU -> fc10."""
    rng = make_rng(rng)
    c = input_shape[0]
    features = [Conv2D(c, 20, 5, init="glorot_uniform", rng=rng), MaxPool2D(2),
                Conv2D(20, 50, 5, init="glorot_uniform", rng=rng), MaxPool2D(2)]
    return _classifier(features, input_shape, rng,
                       lambda n, r: Dense(n, 500, init="glorot_uniform", rng=r),
                       lambda n, r: ReLU(),
                       lambda n, r: Dense(n, num_classes, init="glorot_uniform", rng=r))


def cnn4(input_shape=(1, 28, 28), num_classes=10, rng=None):
    """Four 3x3 convolutions: 32, 32, max-pool, 64, 64, max-pool, then one fc layer."""
    rng = make_rng(rng)
    c = input_shape[0]
    features = [Conv2D(c, 32, 3, padding=1, rng=rng), ReLU(), Conv2D(32, 32, 3, padding=1, rng=rng), ReLU(),
                MaxPool2D(2),
                Conv2D(32, 64, 3, padding=1, rng=rng), ReLU(), Conv2D(64, 64, 3, padding=1, rng=rng), ReLU(),
                MaxPool2D(2)]
    return _classifier(features, input_shape, rng, lambda n, r: Dense(n, num_classes, rng=r))


def _conv_bn_relu(cin, cout, rng, padding=1):
    return [Conv2D(cin, cout, 3, padding=padding, bias=False, rng=rng), BatchNorm2D(cout), ReLU()]


def mnist_cnn(input_shape=(1, 28, 28), num_classes=10, rng=None):
    """The default MNIST network: conv32 5x5 -> max-pool -> conv64 3x3 -> conv64 3x3 ->
    max-pool, each convolution followed by BatchNorm and ReLU, then fc128-BN-ReLU-dropout
    and the classifier. Unpadded convolutions keep it cheap: 28 -> 24 -> 12 -> 10 -> 8 -> 4."""
    rng = make_rng(rng)
    c = input_shape[0]
    features = ([Conv2D(c, 32, 5, bias=False, rng=rng), BatchNorm2D(32), ReLU(), MaxPool2D(2)] +
                _conv_bn_relu(32, 64, rng, padding=0) + _conv_bn_relu(64, 64, rng, padding=0) + [MaxPool2D(2)])
    return _classifier(features, input_shape, rng,
                       lambda n, r: Dense(n, 128, bias=False, rng=r), lambda n, r: BatchNorm1D(128),
                       lambda n, r: ReLU(), lambda n, r: Dropout(0.3, rng=r),
                       lambda n, r: Dense(n, num_classes, rng=r))


def cifar10_quick(input_shape=(3, 32, 32), num_classes=10, rng=None):
    """Caffe's cifar10_quick: conv32 5x5 -> max-pool 3/2 -> ReLU -> conv32 5x5 -> ReLU ->
    avg-pool 3/2 -> conv64 5x5 -> ReLU -> avg-pool 3/2 -> fc64 -> fc10 (Caffe's ceil-mode pooling)."""
    rng = make_rng(rng)
    c = input_shape[0]
    features = [Conv2D(c, 32, 5, padding=2, rng=rng), MaxPool2D(3, 2, ceil_mode=True), ReLU(),
                Conv2D(32, 32, 5, padding=2, rng=rng), ReLU(), AvgPool2D(3, 2, ceil_mode=True),
                Conv2D(32, 64, 5, padding=2, rng=rng), ReLU(), AvgPool2D(3, 2, ceil_mode=True)]
    return _classifier(features, input_shape, rng, lambda n, r: Dense(n, 64, rng=r),
                       lambda n, r: Dense(n, num_classes, rng=r))


def cifar10_bn(input_shape=(3, 32, 32), num_classes=10, rng=None):
    """A stronger CIFAR-10 network: three stages of two conv-BN-ReLU blocks (64, 128, 256
    channels) with max-pooling, global average pooling and a linear classifier."""
    rng = make_rng(rng)
    c = input_shape[0]
    features = (_conv_bn_relu(c, 64, rng) + _conv_bn_relu(64, 64, rng) + [MaxPool2D(2)] +
                _conv_bn_relu(64, 128, rng) + _conv_bn_relu(128, 128, rng) + [MaxPool2D(2)] +
                _conv_bn_relu(128, 256, rng) + _conv_bn_relu(256, 256, rng) + [GlobalAvgPool2D()])
    return Sequential(features + [Dense(256, num_classes, rng=rng)], input_shape=input_shape)


def _basic_block(cin, cout, stride, rng, norm=BatchNorm2D):
    """Two 3x3 conv-norm stages with a skip connection (1x1 conv-norm when the shape changes),
    then ReLU; ``norm(channels)`` builds each normalisation layer."""
    body = Sequential(Conv2D(cin, cout, 3, stride=stride, padding=1, bias=False, rng=rng), norm(cout),
                      ReLU(), Conv2D(cout, cout, 3, padding=1, bias=False, rng=rng), norm(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = Sequential(Conv2D(cin, cout, 1, stride=stride, bias=False, rng=rng), norm(cout))
    return [Residual(body, shortcut), ReLU()]


def _resnet(input_shape, num_classes, rng, norm):
    rng = make_rng(rng)
    c = input_shape[0]
    layers = [Conv2D(c, 32, 3, padding=1, bias=False, rng=rng), norm(32), ReLU()]
    layers += (_basic_block(32, 32, 1, rng, norm) + _basic_block(32, 64, 2, rng, norm) +
               _basic_block(64, 128, 2, rng, norm))
    layers += [GlobalAvgPool2D(), Dense(128, num_classes, rng=rng)]
    return Sequential(layers, input_shape=input_shape)


def resnet_small(input_shape=(3, 32, 32), num_classes=10, rng=None):
    """A small residual network for CIFAR-10: a 3x3 stem of 32 channels and three stages of
    one basic block each (32, 64, 128 channels; stride 2 at the last two), global average
    pooling and a linear classifier."""
    return _resnet(input_shape, num_classes, rng, BatchNorm2D)


def _group_norm(channels, per_group=8):
    return GroupNorm(channels // per_group, channels)


def resnet_small_gn(input_shape=(3, 32, 32), num_classes=10, rng=None):
    """``resnet_small`` with GroupNorm (8 channels per group) in place of BatchNorm: its
    statistics are per sample, so it trains the same with batches of 2 as of 128 and behaves
    identically in training and evaluation."""
    return _resnet(input_shape, num_classes, rng, _group_norm)


MODELS = {"mnist_cnn": mnist_cnn, "lenet": lenet, "cnn4": cnn4, "cifar10_quick": cifar10_quick,
          "cifar10_bn": cifar10_bn, "resnet_small": resnet_small,
          "resnet_small_gn": resnet_small_gn}


def build(name, input_shape, num_classes=10, rng=None):
    """Build a named architecture for ``input_shape`` (C, H, W)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](tuple(input_shape), num_classes, rng)
