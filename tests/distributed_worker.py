"""Programs the distributed tests run under ``mpiexec`` (and once without it, as the
one-process reference). ``python tests/distributed_worker.py SCENARIO OUT [options]``."""
import argparse
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from distributed.threads import limit_blas_threads  # noqa: E402

limit_blas_threads()

import numpy as np  # noqa: E402

from layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy  # noqa: E402
from models import Sequential  # noqa: E402
from optim import SGD, Adam  # noqa: E402


def small_net(seed, bn1d=True):
    """Conv-BN2D-ReLU-pool, then Dense-BN1D-ReLU-Dense. ``bn1d=False`` leaves BatchNorm1D out:
    on a batch of two its input gradient is exactly zero, so what reaches the layers below
    it is rounding noise that differs with the order of the sums."""
    rng = np.random.default_rng(seed)
    middle = [BatchNorm1D(16)] if bn1d else []
    return Sequential(Conv2D(2, 4, 3, padding=1, rng=rng), BatchNorm2D(4), ReLU(), MaxPool2D(2), Flatten(),
                      Dense(64, 16, rng=rng), *middle, ReLU(), Dense(16, 3, rng=rng),
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
    model = small_net(seed=rank + 1 if comm else 1, bn1d=not args.no_bn1d)  # different until broadcast
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
        out = model.forward(x[idx])
        if len(idx):
            loss_fn.forward(out, y[idx])
            _, grads = model.backward(loss_fn.backward())
        else:  # a global batch smaller than the ranks: none here, but this rank takes part
            _, grads = model.backward(np.zeros_like(out))
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
    buf = GradientBuffer(comm, {k: np.zeros(s) for k, s in shapes.items()}, timeout_s=30.0)
    reduced = buf.allreduce(grads_of(rank), counts[rank])
    expected = {k: sum(counts[r] * grads_of(r)[k] for r in range(size)) / sum(counts) for k in shapes}
    assert reduced.count == sum(counts) and reduced.finite and reduced.stop == 0
    for k in shapes:
        np.testing.assert_allclose(reduced.grads[k], expected[k], rtol=1e-12, atol=1e-14)
    # a non-finite gradient on the last rank and a stop request on the first reach everyone
    bad = grads_of(rank)
    if rank == size - 1:
        bad["b"][2] = np.inf
    reduced = buf.allreduce(bad, counts[rank], stop=int(signal.SIGTERM) if rank == 0 else 0)
    assert not reduced.finite and reduced.stop == 1 and reduced.signal == signal.SIGTERM
    reduced = buf.allreduce(None if rank == 0 else grads_of(rank), counts[rank])
    assert reduced.nonfinite == 1
    if rank == 0:
        with open(args.out, "w") as f:
            f.write("ok")


def augment_shift(x, rng):
    """A random roll of each image by up to one pixel along its width (draws one value per image)."""
    shift = rng.integers(-1, 2, len(x))
    cols = (np.arange(x.shape[-1]) - shift[:, None]) % x.shape[-1]
    return np.take_along_axis(x, cols[:, None, None, :], axis=-1)


def trainer_fit(args, comm):
    """Trainer.fit with MPIStrategy (synchronised BatchNorm) or alone; rank 0 saves the
    weights. --fault: nan (one image of the data is NaN; nan-sync: with synchronised
    BatchNorm, which spreads it to every rank holding samples), diverge (rank 1 nudges a weight)
    -- each rank writes what stopped it to OUT.rank; raise (rank 1 raises in a callback),
    hang (rank 1 sleeps a minute; the others time out after 3 s), late (rank 1 sleeps a
    minute before fitting) -- the job aborts; float64 (a second fit after model.astype:
    rank 0 also saves the dtype of the averaged gradients)."""
    from models.callbacks import Callback
    from models.trainer import Trainer, TrainingStopped
    strategy = None
    if comm:
        from distributed import MPIStrategy, convert_sync_batchnorm
        timeout = 3 if args.fault in ("hang", "late") else None
        strategy = MPIStrategy(comm, timeout_s=timeout)
    rank = strategy.rank if strategy else 0
    model = small_net(seed=rank + 1 if comm else 1, bn1d=not args.no_bn1d)
    if comm and args.fault != "nan":  # per-rank statistics keep a NaN on its own rank
        convert_sync_batchnorm(model, comm, timeout)
    x, y = data(43)
    if args.fault in ("nan", "nan-sync"):
        x[17, 0, 3, 3] = np.nan

    class Fault(Callback):
        def on_step_end(self, trainer, logs):
            if rank == 1 and trainer.progress["global_step"] == 2:
                if args.fault == "diverge":
                    trainer.model.params["0.weight"][0, 0, 0, 0] += 1e-3
                elif args.fault == "raise":
                    raise RuntimeError("rank 1 fails on purpose")
                elif args.fault == "hang":
                    time.sleep(60)

    trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.params, 0.1, momentum=0.9), rng=5,
                      strategy=strategy, callbacks=[Fault()])
    if args.fault == "late" and rank == 1:
        time.sleep(60)
    try:
        trainer.fit(x, y, epochs=2, batch_size=args.batch, augment=augment_shift, validation=data(21),
                    max_steps=args.max_steps)
        if args.fault == "float64":  # new arrays, the same names and shapes
            model.astype(np.float64)
            trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.params, 0.1, momentum=0.9), rng=6,
                              strategy=strategy)  # the same strategy object, fitted again
            trainer.fit(x.astype(np.float64), y, epochs=1, batch_size=args.batch)
    except Exception as err:
        if args.fault in (None, "raise", "hang", "late", "float64"):
            raise
        with open(f"{args.out}.{rank}", "w") as f:
            f.write(f"{type(err).__name__}: {err}")
        return
    result = trainer.evaluate(*data(21))
    if rank == 0:
        extra = {}
        if args.fault == "float64" and strategy:
            extra["grad_dtype"] = str(next(iter(strategy.last.grads.values())).dtype)
        np.savez(args.out, **model.params, **model.buffers, eval=[result.loss, result.accuracy], **extra)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["train_steps", "allreduce", "trainer_fit"])
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=11)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--max-steps", type=int, help="trainer_fit: stop after this many updates")
    p.add_argument("--no-bn1d", action="store_true", help="a network without BatchNorm1D")
    p.add_argument("--fault", choices=["nan", "nan-sync", "diverge", "raise", "hang", "late", "float64"])
    p.add_argument("--single", action="store_true", help="one process, no MPI (the reference)")
    args = p.parse_args()
    comm = None
    if not args.single:
        from distributed import abort_on_uncaught_exception, world
        comm = world()
        abort_on_uncaught_exception(comm)
    {"train_steps": train_steps, "allreduce": allreduce, "trainer_fit": trainer_fit}[args.scenario](args, comm)


if __name__ == "__main__":
    main()
