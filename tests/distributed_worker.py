"""Programs the distributed tests run under ``mpiexec`` (and once without it, as the
one-process reference). ``python tests/distributed_worker.py SCENARIO OUT [options]``."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from distributed.threads import limit_blas_threads  # noqa: E402

limit_blas_threads()

import numpy as np  # noqa: E402

from layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy  # noqa: E402
from models import Sequential  # noqa: E402
from optim import SGD, Adam  # noqa: E402


def small_net(seed):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2D(2, 4, 3, padding=1, rng=rng), BatchNorm2D(4), ReLU(), MaxPool2D(2), Flatten(),
                      Dense(64, 16, rng=rng), BatchNorm1D(16), ReLU(), Dense(16, 3, rng=rng),
                      input_shape=(2, 8, 8))


def data(n=40):
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 2, 8, 8)).astype(np.float32), rng.integers(0, 3, n)


def shard(indices, rank, size):
    base, extra = divmod(len(indices), size)
    start = rank * base + min(rank, extra)
    return indices[start:start + base + (rank < extra)]


def train_steps(args, comm):
    """SGD-momentum and Adam steps over uneven global batches; rank 0 saves the weights."""
    from distributed import DistributedOptimizer, broadcast_parameters, convert_sync_batchnorm
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    model = small_net(seed=rank + 1 if comm else 1)  # different on each rank until broadcast
    x, y = data()
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.params, 0.1, momentum=0.9, weight_decay=1e-3) if args.optimizer == "sgd" \
        else Adam(model.params, 0.01)
    if comm:
        broadcast_parameters(model, comm)
        convert_sync_batchnorm(model, comm)
        opt = DistributedOptimizer(opt, comm)
    order = np.random.default_rng(3).permutation(len(x))
    batch = args.batch
    for step in range(args.steps):
        start = (step * batch) % len(x)
        idx = order[start:start + batch]
        if comm:
            idx = shard(idx, rank, size)
        loss_fn.forward(model.forward(x[idx]), y[idx])
        _, grads = model.backward(loss_fn.backward())
        if comm:
            opt.step(grads, local_count=len(idx))
        else:
            opt.step(grads)
    if rank == 0:
        np.savez(args.out, **model.params, **model.buffers)


def allreduce(args, comm):
    """The flat buffer's weighted average against a plain sum of every rank's arrays."""
    from distributed import GradientBuffer
    rank, size = comm.Get_rank(), comm.Get_size()
    shapes = {"a": (3, 4), "b": (5,), "c": (2, 1, 3)}

    def grads_of(r):
        g = np.random.default_rng(100 + r)
        return {k: g.standard_normal(s) for k, s in shapes.items()}

    counts = [r + 2 for r in range(size)]
    buf = GradientBuffer(comm, {k: np.zeros(s) for k, s in shapes.items()})
    reduced = buf.allreduce(grads_of(rank), counts[rank])
    expected = {k: sum(counts[r] * grads_of(r)[k] for r in range(size)) / sum(counts) for k in shapes}
    assert reduced.count == sum(counts) and reduced.finite and reduced.stop == 0
    for k in shapes:
        np.testing.assert_allclose(reduced.grads[k], expected[k], rtol=1e-12, atol=1e-14)
    # a non-finite gradient on the last rank and a stop request on the first reach everyone
    bad = grads_of(rank)
    if rank == size - 1:
        bad["b"][2] = np.inf
    reduced = buf.allreduce(bad, counts[rank], stop=rank == 0)
    assert not reduced.finite and reduced.stop == 1
    reduced = buf.allreduce(None if rank == 0 else grads_of(rank), counts[rank])
    assert reduced.nonfinite == 1
    if rank == 0:
        with open(args.out, "w") as f:
            f.write("ok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["train_steps", "allreduce"])
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=11)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--single", action="store_true", help="one process, no MPI (the reference)")
    args = p.parse_args()
    comm = None
    if not args.single:
        from distributed import abort_on_uncaught_exception, world
        comm = world()
        abort_on_uncaught_exception(comm)
    {"train_steps": train_steps, "allreduce": allreduce}[args.scenario](args, comm)


if __name__ == "__main__":
    main()
