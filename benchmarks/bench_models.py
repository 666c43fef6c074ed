"""Whole-network training-step benchmark: npnet against PyTorch CPU on the same networks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_models.py

For each network: the median time of a full training step (forward, softmax
cross-entropy, backward, SGD-momentum update) after warm-up, images/s, the
process's peak resident memory, and eval-mode forward throughput. Each framework
runs in its own subprocess so that peak memory is its own. PyTorch columns appear
when torch is installed (``pip install torch==2.13.0``).

The distributed columns (with mpi4py, ``pip install -e ".[mpi]"``) time the same
global batch stepped data-parallel by ``--ranks`` single-threaded MPI processes
(``mpiexec -n K``, each its slice of the batch, one gradient Allreduce per step),
against the one process above that uses every core through its BLAS threads.

The machine may be shared and its speed drift over minutes. With ``--rounds R``
the workers of a network run in turns R times (npnet, PyTorch, distributed, then
again); every figure is the median over the rounds and every ratio the median of
the ratios within a round (both frameworks measured minutes apart, never longer),
and each round's ratios are listed after the table.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distributed.threads import limit_blas_threads  # noqa: E402

limit_blas_threads()  # an MPI worker: its share of the cores, before numpy loads

from timing import median_ms  # noqa: E402

NETWORKS = {  # name: (builder, batch, input shape)
    "lenet": ("lenet", 64, (1, 28, 28)),
    "cifar10_quick": ("cifar10_quick", 100, (3, 32, 32)),
    "cnn4": ("cnn4", 128, (1, 28, 28)),
    "mnist_cnn": ("mnist_cnn", 128, (1, 28, 28)),
}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(framework, net, warmup, repeat, default_malloc):
    if not default_malloc:
        from layers.allocator import keep_freed_memory
        keep_freed_memory()
    import numpy as np
    from models import zoo
    from layers import SoftmaxCrossEntropy
    from optim import SGD
    builder, batch, shape = NETWORKS[net]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = zoo.build(builder, shape, rng=0)
    if framework in ("npnet", "npnet-mpi"):
        loss = SoftmaxCrossEntropy()
        opt = SGD(model.params, lr=0.01, momentum=0.9)
        model.input_grad = False  # the data needs no gradient (PyTorch skips it too)
        local_x, local_y = x, y
        if framework == "npnet-mpi":
            from distributed import DistributedOptimizer, MPIStrategy
            strategy = MPIStrategy()
            mine = strategy.shard(np.arange(batch))
            local_x, local_y = x[mine], y[mine]
            opt = DistributedOptimizer(opt, strategy.comm)

        def step():
            loss.forward(model.forward(local_x), local_y)
            _, grads = model.backward(loss.backward())
            if framework == "npnet-mpi":
                opt.step(grads, local_count=len(local_y))
            else:
                opt.step(grads)

        def infer():
            model.predict(x, batch_size=batch)
    else:
        import torch
        from torch_equiv import to_torch
        torch.set_num_threads(os.cpu_count())
        tmodel = to_torch(model)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        crit = torch.nn.CrossEntropyLoss()
        opt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            crit(tmodel(tx), ty).backward()
            opt.step()

        def infer():
            tmodel.eval()
            with torch.no_grad():
                tmodel(tx)
            tmodel.train()

    train_ms = median_ms(step, warmup, repeat)
    if framework == "npnet-mpi":  # the step is synchronous; rank 0's median is the job's
        return {"train_ms": train_ms, "batch": batch, "rank": strategy.rank, "threads": os.environ["OMP_NUM_THREADS"]}
    infer_ms = median_ms(infer, warmup, repeat)
    return {"train_ms": train_ms, "infer_ms": infer_ms, "batch": batch, "peak_mb": peak_rss_mb()}


def run_worker(framework, net, warmup, repeat, default_malloc, ranks=1):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--net", net,
           "--warmup", str(warmup), "--repeat", str(repeat)] + (["--default-malloc"] if default_malloc else [])
    if framework == "npnet-mpi":
        here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [here if os.path.exists(here) else "mpiexec", "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (train.py keeps freed memory mapped; "
                             "by default both frameworks run with that setting here)")
    parser.add_argument("--ranks", type=int, default=os.cpu_count(),
                        help="MPI processes of the distributed columns (default: one per core)")
    parser.add_argument("--no-distributed", action="store_true", help="skip the distributed columns")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run each network's workers in turns this many times; report medians")
    parser.add_argument("--worker", choices=["npnet", "npnet-mpi", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.worker:
        result = worker(args.worker, args.net, args.warmup, args.repeat, args.default_malloc)
        if result.get("rank", 0) == 0:
            print(json.dumps(result))
        return
    try:
        import torch  # noqa: F401  (only whether it is installed)
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    try:
        import mpi4py  # noqa: F401
        have_mpi = not args.no_distributed
    except ImportError:
        have_mpi = False
    print(f"cores: {os.cpu_count()}  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}  "
          f"malloc: {'default' if args.default_malloc else 'keeps freed memory (as train.py)'}")
    head = f"{'network':<15}{'batch':>6}{'npnet ms':>10}{'img/s':>8}{'eval img/s':>11}{'peak MB':>9}"
    if have_torch:
        head += f"{'torch ms':>10}{'img/s':>8}{'eval img/s':>11}{'ratio':>7}{'eval ratio':>11}"
    if have_mpi:
        head += f"{f'{args.ranks}rk ms':>9}{'img/s':>8}{'speedup':>8}"
        head += f"{'ratio':>7}" if have_torch else ""
    print(head)
    per_round = []
    for net in args.nets:
        rounds = [measure_network(net, args, have_torch, have_mpi) for _ in range(args.rounds)]
        print(table_line(net, rounds, args, have_torch, have_mpi), flush=True)
        per_round.append((net, rounds))
    if args.rounds > 1 and (have_torch or have_mpi):
        print(f"ratios of each round ({args.rounds} rounds, the table gives their medians):")
        for net, rounds in per_round:
            parts = []
            if have_torch:
                parts.append("npnet/torch " + " ".join(f"{m['ratio']:.2f}" for m in rounds))
            if have_mpi:
                parts.append("speedup " + " ".join(f"{m['speedup']:.2f}" for m in rounds))
            if have_torch and have_mpi:
                parts.append(f"{args.ranks}rk/torch " + " ".join(f"{m['mpi_ratio']:.2f}" for m in rounds))
            print(f"  {net:<15}" + "   ".join(parts))


def measure_network(net, args, have_torch, have_mpi):
    """One round: every worker of ``net`` once, in turn; times and the ratios within the round."""
    r = run_worker("npnet", net, args.warmup, args.repeat, args.default_malloc)
    m = {"batch": r["batch"], "train_ms": r["train_ms"], "infer_ms": r["infer_ms"], "peak_mb": r["peak_mb"]}
    if have_torch:
        t = run_worker("torch", net, args.warmup, args.repeat, args.default_malloc)
        m.update(torch_ms=t["train_ms"], torch_infer_ms=t["infer_ms"], ratio=r["train_ms"] / t["train_ms"],
                 eval_ratio=r["infer_ms"] / t["infer_ms"])
    if have_mpi:
        d = run_worker("npnet-mpi", net, args.warmup, args.repeat, args.default_malloc, args.ranks)
        m.update(mpi_ms=d["train_ms"], speedup=r["train_ms"] / d["train_ms"])
        if have_torch:
            m["mpi_ratio"] = d["train_ms"] / m["torch_ms"]
    return m


def table_line(net, rounds, args, have_torch, have_mpi):
    """The table's line for ``net``: medians over the rounds."""
    def med(key):
        return statistics.median(m[key] for m in rounds)
    b = rounds[0]["batch"]
    line = (f"{net:<15}{b:>6}{med('train_ms'):>10.1f}{b / med('train_ms') * 1000:>8.0f}"
            f"{b / med('infer_ms') * 1000:>11.0f}{med('peak_mb'):>9.0f}")
    if have_torch:
        line += (f"{med('torch_ms'):>10.1f}{b / med('torch_ms') * 1000:>8.0f}"
                 f"{b / med('torch_infer_ms') * 1000:>11.0f}{med('ratio'):>7.2f}{med('eval_ratio'):>11.2f}")
    if have_mpi:
        line += f"{med('mpi_ms'):>9.1f}{b / med('mpi_ms') * 1000:>8.0f}{med('speedup'):>8.2f}"
        line += f"{med('mpi_ratio'):>7.2f}" if have_torch else ""
    return line


if __name__ == "__main__":
    main()
