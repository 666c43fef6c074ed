"""Per-layer benchmark: Conv2D and pooling at the shapes of LeNet, cifar10_quick and a VGG-style net.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_layers.py

For each layer: median eval-mode forward and training forward+backward (with the
input gradient) time, images/s, effective GFLOP/s of the convolution's three
matrix products over the whole step, and the unfolding ``algorithm="auto"`` took
(``rows`` or ``cols``, see Conv2D). With PyTorch installed, the same layer in
PyTorch (``torch.set_num_threads(cores)``, forward under ``no_grad``) and the ratio
npnet / PyTorch of forward+backward.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layers import AvgPool2D, Conv2D, MaxPool2D  # noqa: E402
from timing import median_ms  # noqa: E402

CASES = [  # name, batch, (C, H, W), layer factory
    ("conv 1->20 5x5 (N64 28x28)", 64, (1, 28, 28), lambda r: Conv2D(1, 20, 5, rng=r)),
    ("conv 20->50 5x5 (N64 12x12)", 64, (20, 12, 12), lambda r: Conv2D(20, 50, 5, rng=r)),
    ("conv 32->32 5x5 p2 (N100 16x16)", 100, (32, 16, 16), lambda r: Conv2D(32, 32, 5, padding=2, rng=r)),
    ("conv 64->64 3x3 p1 (N128 14x14)", 128, (64, 14, 14), lambda r: Conv2D(64, 64, 3, padding=1, rng=r)),
    ("maxpool 2x2/2 (N64 C20 24x24)", 64, (20, 24, 24), lambda r: MaxPool2D(2)),
    ("maxpool 3x3/2 ceil (N100 C32 32x32)", 100, (32, 32, 32), lambda r: MaxPool2D(3, 2, ceil_mode=True)),
    ("avgpool 3x3/2 ceil (N100 C32 16x16)", 100, (32, 16, 16), lambda r: AvgPool2D(3, 2, ceil_mode=True)),
]


def conv_flops(layer, batch, out_hw):
    """Multiply-adds x2 of the forward product; backward does two products of the same size."""
    kh, kw = layer.kernel_size
    k = layer.in_channels // layer.groups * kh * kw
    return 2 * batch * out_hw[0] * out_hw[1] * layer.out_channels * k


def torch_ms(layer, x, repeat):
    import torch
    from torch_equiv import to_torch
    module = to_torch(layer)
    tx = torch.from_numpy(x).requires_grad_(True)
    with torch.no_grad():
        fwd = median_ms(lambda: module(tx), repeat=repeat)

    def step():
        out = module(tx)
        out.backward(torch.ones_like(out))
    return fwd, median_ms(step, repeat=repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"cores: {os.cpu_count()}  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    head = f"{'layer':<38}{'fwd ms':>8}{'f+b ms':>8}{'img/s':>8}{'GFLOP/s':>9}{'unfold':>7}"
    if have_torch:
        head += f"{'torch fwd':>10}{'torch f+b':>10}{'ratio':>7}"
    print(head)
    rng = np.random.default_rng(0)
    for name, batch, shape, factory in CASES:
        layer = factory(rng)
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        layer.eval()
        fwd = median_ms(lambda: layer.forward(x), repeat=args.repeat)
        layer.train()
        out = layer.forward(x)
        dout = np.ones_like(out)

        def step():
            layer.forward(x)
            layer.backward(dout)
        both = median_ms(step, repeat=args.repeat)
        line = f"{name:<38}{fwd:>8.2f}{both:>8.2f}{batch / both * 1000:>8.0f}"
        if isinstance(layer, Conv2D):
            flops = 3 * conv_flops(layer, batch, out.shape[2:])
            layer.forward(x)
            line += f"{flops / both / 1e6:>9.0f}{layer._saved()[1]:>7}"
        else:
            line += f"{'':>9}{'':>7}"
        if have_torch:
            tf, tb = torch_ms(layer, x, args.repeat)
            line += f"{tf:>10.2f}{tb:>10.2f}{both / tb:>7.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
