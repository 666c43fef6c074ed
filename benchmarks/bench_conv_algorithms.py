"""Conv2D's two unfoldings side by side on every convolution of the benchmark networks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv_algorithms.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_conv_algorithms.py --batch-scale 0.5   # one MPI rank of two

For each Conv2D of lenet, cifar10_quick, cnn4 and mnist_cnn at the batch of
bench_models.py (times ``--batch-scale``): the median forward and backward
milliseconds with ``algorithm="im2col"`` and ``"rows"`` (with stride 1 the row form's
input gradient is by rows, otherwise by fold; ``"rows+fold"`` forces the fold), and
what ``"auto"`` picks. The first layer of a network skips its input gradient, as in
training.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import NETWORKS  # noqa: E402
from layers import Conv2D  # noqa: E402
from layers.allocator import keep_freed_memory  # noqa: E402
from models import zoo  # noqa: E402
from timing import median_ms  # noqa: E402


def time_layer(layer, x, repeat):
    out = layer.forward(x)
    dout = np.ones_like(out)
    forward = median_ms(lambda: layer.forward(x), 2, repeat)
    backward = median_ms(lambda: (layer.forward(x), layer.backward(dout)), 2, repeat) - forward
    return forward, backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    keep_freed_memory()
    rng = np.random.default_rng(0)
    print(f"{'network':<14}{'layer':<28}{'batch':>6}{'im2col f/b ms':>16}{'rows f/b ms':>14}"
          f"{'rows+fold b':>12}{'best':>10}{'auto':>8}")
    for net, (builder, batch, shape) in NETWORKS.items():
        n = max(1, int(batch * args.batch_scale))
        model = zoo.build(builder, shape, rng=0)
        x = rng.standard_normal((n,) + shape).astype(np.float32)
        for index, layer in enumerate(model.layers):
            if isinstance(layer, Conv2D):
                config = layer.get_config()
                times = {}
                for algorithm in ("im2col", "rows", "rows+fold"):
                    conv = Conv2D(**dict(config, algorithm=algorithm.split("+")[0]), rng=0)
                    conv.input_grad = index > 0
                    if algorithm == "rows+fold":  # the row unfolding, but dx by im2col's fold
                        conv._dx_by_rows = lambda *a: False
                    times[algorithm] = time_layer(conv, x, args.repeat)
                auto = Conv2D(**config, rng=0)
                auto.input_grad = index > 0
                auto.forward(x)
                picked = auto._saved()[1]
                best = min(times, key=lambda k: sum(times[k]) if k != "rows+fold"
                           else times[k][1] + times["rows"][0])
                (fi, bi), (fr, br), (_, bf) = times["im2col"], times["rows"], times["rows+fold"]
                name = f"{index}: {config['in_channels']}->{config['out_channels']} k{config['kernel_size'][0]}"
                print(f"{net:<14}{name:<28}{n:>6}{fi:>8.2f}/{bi:<7.2f}{fr:>6.2f}/{br:<7.2f}{bf:>12.2f}"
                      f"{best:>10}{picked:>8}", flush=True)
            x = layer.forward(x)


if __name__ == "__main__":
    main()
