"""Predicted data-parallel scaling of the zoo's networks from a ring-allreduce cost model.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling_model.py

Each step, every rank computes forward and backward on its own ``--batch`` samples
(weak scaling: the global batch is K x batch), then the gradients are averaged by
one ring allreduce, which does not overlap the computation here:

    t_allreduce(K) = 2 (K - 1) / K * gradient_bytes / bandwidth + 2 (K - 1) * latency
    t_step(K)      = t_compute + t_allreduce(K)
    efficiency(K)  = t_compute / t_step(K),   speedup(K) = K * efficiency(K)

``t_compute`` is measured here: the median single-thread training step of each network
on ``--batch`` samples (one core per rank), or given with ``--compute-ms NET=MS``.
The gradient bytes are the networks' float32 parameter sizes (+4 control values).

    mpiexec -n 2 python benchmarks/scaling_model.py --measure

instead times the flat-buffer Allreduce of each network's gradients between the
launched ranks (on one machine: through shared memory, not a network link).
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # one core per rank; before numpy loads
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

NETWORKS = {"lenet": (1, 28, 28), "mnist_cnn": (1, 28, 28), "cnn4": (1, 28, 28),
            "cifar10_quick": (3, 32, 32), "resnet_small": (3, 32, 32), "cifar10_bn": (3, 32, 32)}
LINKS = {"10 Gb/s": (10e9 / 8, 20e-6), "100 Gb/s": (100e9 / 8, 5e-6)}  # bytes/s, latency per ring step


def allreduce_s(nbytes, ranks, bandwidth, latency):
    """Ring allreduce time: 2(K-1) steps, each moving nbytes/K and paying one latency."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def gradient_bytes(name):
    from models import zoo
    model = zoo.build(name, NETWORKS[name], rng=0)
    return 4 * (sum(p.size for p in model.params.values()) + 4)


def compute_ms(name, batch, repeat):
    import numpy as np
    from layers import SoftmaxCrossEntropy
    from models import zoo
    from optim import SGD
    from timing import median_ms
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + NETWORKS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = zoo.build(name, NETWORKS[name], rng=0)
    model.input_grad = False
    loss, opt = SoftmaxCrossEntropy(), SGD(model.params, 0.01, momentum=0.9)

    def step():
        loss.forward(model.forward(x), y)
        opt.step(model.backward(loss.backward())[1])
    return median_ms(step, 1, repeat)


def measure(names, repeat):
    import numpy as np
    from distributed import GradientBuffer, MPIStrategy
    from timing import median_ms
    strategy = MPIStrategy()
    if strategy.is_root:
        print(f"flat-buffer Allreduce between {strategy.size} ranks, median of {repeat}")
        print(f"{'network':<15}{'grad MB':>8}{'allreduce ms':>13}")
    for name in names:
        nbytes = gradient_bytes(name)
        grads = [np.ones(nbytes // 4 - 4, np.float32)]
        buffer = GradientBuffer(strategy.comm, grads)
        strategy.comm.Barrier()
        ms = median_ms(lambda: buffer.allreduce(grads, 1), 3, repeat)
        if strategy.is_root:
            print(f"{name:<15}{nbytes / 1e6:>8.2f}{ms:>13.3f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    p.add_argument("--ranks", type=int, nargs="+", default=[8, 64, 512])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--compute-ms", nargs="*", default=[], metavar="NET=MS",
                   help="use this single-rank step time instead of measuring it")
    p.add_argument("--measure", action="store_true", help="time the Allreduce between the launched MPI ranks")
    args = p.parse_args()
    if args.measure:
        return measure(args.nets, max(args.repeat, 50))
    given = {k: float(v) for k, v in (item.split("=") for item in args.compute_ms)}
    from layers.allocator import keep_freed_memory
    keep_freed_memory()
    print(f"per-rank batch {args.batch}, one thread per rank; latency per ring step: "
          + ", ".join(f"{k} {v[1] * 1e6:.0f} us" for k, v in LINKS.items()))
    head = f"{'network':<15}{'grad MB':>8}{'compute ms':>11}"
    for link in LINKS:
        head += "".join(f"{f'{link} K={k}':>19}" for k in args.ranks)
    print(head)
    print(f"{'':<34}" + "".join(f"{'allreduce ms / eff':>19}" for _ in LINKS for _ in args.ranks))
    for name in args.nets:
        nbytes = gradient_bytes(name)
        t = given.get(name) or compute_ms(name, args.batch, args.repeat)
        line = f"{name:<15}{nbytes / 1e6:>8.2f}{t:>11.1f}"
        for bandwidth, latency in LINKS.values():
            for k in args.ranks:
                ar = allreduce_s(nbytes, k, bandwidth, latency) * 1e3
                line += f"{f'{ar:.2f} / {t / (t + ar):.0%}':>19}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
