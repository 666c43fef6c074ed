"""The table of layer configurations every layer test runs over.

Each row is ``(id, factory(rng) -> layer, input_shape)``. Adding a layer means
adding rows here; ``test_gradcheck.py`` fails for an exported layer class that
no row builds.
"""
import layers as L
from examples.custom_layers import PReLU, Swish, gated_linear_unit
from models import Residual, Sequential

ROWS = [
    ("dense", lambda r: L.Dense(5, 4, rng=r), (3, 5)),
    ("dense_nobias_glorot", lambda r: L.Dense(6, 2, bias=False, init="glorot_uniform", rng=r), (4, 6)),
    ("relu", lambda r: L.ReLU(), (4, 6)),
    ("leaky_relu", lambda r: L.LeakyReLU(0.2), (4, 6)),
    ("sigmoid", lambda r: L.Sigmoid(), (4, 6)),
    ("tanh", lambda r: L.Tanh(), (4, 6)),
    ("softmax", lambda r: L.Softmax(), (4, 6)),
    ("softmax_axis1", lambda r: L.Softmax(axis=1), (2, 3, 4)),
    ("flatten", lambda r: L.Flatten(), (2, 3, 2, 2)),
    ("dropout", lambda r: L.Dropout(0.4, rng=r), (5, 6)),
    ("batchnorm1d", lambda r: L.BatchNorm1D(5), (6, 5)),
    ("batchnorm1d_sequence", lambda r: L.BatchNorm1D(3), (4, 3, 5)),
    ("batchnorm2d", lambda r: L.BatchNorm2D(3), (4, 3, 3, 2)),
    ("conv3x3", lambda r: L.Conv2D(2, 3, 3, rng=r), (2, 2, 5, 5)),
    ("conv_stride2_pad1", lambda r: L.Conv2D(3, 4, 3, stride=2, padding=1, rng=r), (2, 3, 6, 7)),
    ("conv_dilation2", lambda r: L.Conv2D(2, 2, 3, dilation=2, padding=2, rng=r), (1, 2, 6, 6)),
    ("conv_rect_asym", lambda r: L.Conv2D(2, 3, (2, 3), stride=(2, 1), padding=(0, 2), dilation=(1, 2), rng=r),
     (2, 2, 5, 6)),
    ("conv_same_even", lambda r: L.Conv2D(2, 2, 4, padding="same", rng=r), (2, 2, 5, 4)),
    ("conv_groups2", lambda r: L.Conv2D(4, 6, 3, groups=2, padding=1, rng=r), (2, 4, 4, 4)),
    ("conv_depthwise_x2", lambda r: L.Conv2D(3, 6, 3, groups=3, padding="same", rng=r), (2, 3, 4, 5)),
    ("conv1x1", lambda r: L.Conv2D(4, 3, 1, rng=r), (2, 4, 3, 3)),
    ("conv1x1_stride2", lambda r: L.Conv2D(4, 3, 1, stride=2, rng=r), (2, 4, 5, 5)),
    ("conv_nobias", lambda r: L.Conv2D(2, 2, 2, bias=False, rng=r), (1, 2, 3, 3)),
    ("conv_chunked", lambda r: L.Conv2D(2, 3, 3, padding=1, workspace_bytes=1, rng=r), (3, 2, 4, 4)),
    ("maxpool2", lambda r: L.MaxPool2D(2), (2, 3, 4, 4)),
    ("maxpool3s2_overlap", lambda r: L.MaxPool2D(3, stride=2), (2, 2, 7, 7)),
    ("maxpool_pad_ceil", lambda r: L.MaxPool2D(3, stride=2, padding=1, ceil_mode=True), (2, 2, 6, 6)),
    ("avgpool2", lambda r: L.AvgPool2D(2), (2, 3, 4, 4)),
    ("avgpool3s2_pad_ceil", lambda r: L.AvgPool2D(3, stride=2, padding=1, ceil_mode=True), (2, 2, 6, 6)),
    ("global_avgpool", lambda r: L.GlobalAvgPool2D(), (2, 3, 3, 4)),
    ("sequential_cnn", lambda r: Sequential(L.Conv2D(1, 2, 3, rng=r), L.BatchNorm2D(2), L.ReLU(),
                                            L.MaxPool2D(2), L.Flatten(), L.Dense(8, 3, rng=r)), (3, 1, 6, 6)),
    ("sequential_mlp", lambda r: Sequential(L.Dense(4, 5, rng=r), L.Tanh(), L.Dropout(0.2, rng=r),
                                            L.Dense(5, 2, rng=r), L.Sigmoid()), (3, 4)),
    ("residual_identity", lambda r: Residual(Sequential(L.Conv2D(2, 2, 3, padding=1, rng=r), L.BatchNorm2D(2),
                                                        L.Tanh())), (2, 2, 4, 4)),
    ("residual_1x1_shortcut", lambda r: Residual(Sequential(L.Conv2D(2, 3, 3, stride=2, padding=1, rng=r),
                                                            L.Tanh()),
                                                 L.Conv2D(2, 3, 1, stride=2, rng=r)), (2, 2, 5, 5)),
    ("multiply_glu", lambda r: gated_linear_unit(5, 3, r), (4, 5)),
    ("nested_residual_in_sequential", lambda r: Sequential(L.Dense(4, 4, rng=r),
                                                           Residual(Sequential(L.Dense(4, 4, rng=r), L.Tanh())),
                                                           L.Dense(4, 2, rng=r)), (3, 4)),
    ("example_swish", lambda r: Swish(), (3, 5)),
    ("example_prelu", lambda r: PReLU(3), (2, 3, 2, 2)),
]
