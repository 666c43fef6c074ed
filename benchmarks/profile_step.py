"""Where a training step's time goes: median forward and backward time of every layer.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_step.py cnn4

Runs the network's training steps (the first layer skips its input gradient, as in
train.py, with train.py's allocator setting) and prints per layer the median forward
and backward milliseconds and their share of the sum, then the optimizer step.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import NETWORKS  # noqa: E402
from layers import SoftmaxCrossEntropy  # noqa: E402
from layers.allocator import keep_freed_memory  # noqa: E402
from models import zoo  # noqa: E402
from optim import SGD  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("net", choices=list(NETWORKS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, help="batch size (default: bench_models.py's)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    keep_freed_memory()
    builder, batch, shape = NETWORKS[args.net]
    batch = args.batch or batch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = zoo.build(builder, shape, rng=0)
    model.input_grad = False
    loss, opt = SoftmaxCrossEntropy(), SGD(model.params, lr=0.01, momentum=0.9)
    n = len(model.layers)
    warmup = 3
    rows = warmup + args.steps  # the warm-up rows are left out of the medians
    fwd, bwd, upd = np.zeros((rows, n)), np.zeros((rows, n)), np.zeros(rows)
    for step in range(rows):
        h = x
        for i, layer in enumerate(model.layers):
            t = time.perf_counter()
            h = layer.forward(h)
            fwd[step, i] = time.perf_counter() - t
        loss.forward(h, y)
        d, grads = loss.backward(), {}
        for i in range(n - 1, -1, -1):
            t = time.perf_counter()
            d, g = model.layers[i].backward(d)
            bwd[step, i] = time.perf_counter() - t
            grads.update({f"{i}.{k}": v for k, v in g.items()})
        t = time.perf_counter()
        opt.step(grads)
        upd[step] = time.perf_counter() - t
    fwd, bwd, upd = fwd[warmup:], bwd[warmup:], upd[warmup:]
    f, b = np.median(fwd, axis=0) * 1e3, np.median(bwd, axis=0) * 1e3
    total = f.sum() + b.sum() + np.median(upd) * 1e3
    print(f"{args.net}, batch {batch}: {total:.1f} ms per step (sum of medians)")
    print(f"{'layer':<48}{'fwd ms':>8}{'bwd ms':>8}{'share':>7}")
    for i, layer in enumerate(model.layers):
        print(f"{i:>2} {repr(layer)[:45]:<45}{f[i]:>8.2f}{b[i]:>8.2f}{(f[i] + b[i]) / total:>7.0%}")
    print(f"{'   optimizer step':<48}{np.median(upd) * 1e3:>8.2f}{'':>8}{np.median(upd) * 1e3 / total:>7.0%}")


if __name__ == "__main__":
    main()
