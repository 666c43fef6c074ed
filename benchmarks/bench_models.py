"""Whole-network training-step benchmark: npnet against PyTorch CPU on the same networks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_models.py

For each network: the median time of a full training step (forward, softmax
cross-entropy, backward, SGD-momentum update) after warm-up, images/s, the
process's peak resident memory, and eval-mode forward throughput. Each framework
runs in its own subprocess so that peak memory is its own. PyTorch columns appear
when torch is installed (``pip install torch==2.13.0``).
"""
import argparse
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
    if framework == "npnet":
        loss = SoftmaxCrossEntropy()
        opt = SGD(model.params, lr=0.01, momentum=0.9)
        model.input_grad = False  # the data needs no gradient (PyTorch skips it too)

        def step():
            loss.forward(model.forward(x), y)
            _, grads = model.backward(loss.backward())
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
    infer_ms = median_ms(infer, warmup, repeat)
    return {"train_ms": train_ms, "infer_ms": infer_ms, "batch": batch, "peak_mb": peak_rss_mb()}


def run_worker(framework, net, warmup, repeat, default_malloc):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--net", net,
           "--warmup", str(warmup), "--repeat", str(repeat)] + (["--default-malloc"] if default_malloc else [])
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
    parser.add_argument("--worker", choices=["npnet", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.net, args.warmup, args.repeat, args.default_malloc)))
        return
    try:
        import torch  # noqa: F401  (only whether it is installed)
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    print(f"cores: {os.cpu_count()}  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}  "
          f"malloc: {'default' if args.default_malloc else 'keeps freed memory (as train.py)'}")
    head = f"{'network':<15}{'batch':>6}{'npnet ms':>10}{'img/s':>8}{'eval img/s':>11}{'peak MB':>9}"
    if have_torch:
        head += f"{'torch ms':>10}{'img/s':>8}{'eval img/s':>11}{'ratio':>7}{'eval ratio':>11}"
    print(head)
    for net in args.nets:
        r = run_worker("npnet", net, args.warmup, args.repeat, args.default_malloc)
        b = r["batch"]
        line = (f"{net:<15}{b:>6}{r['train_ms']:>10.1f}{b / r['train_ms'] * 1000:>8.0f}"
                f"{b / r['infer_ms'] * 1000:>11.0f}{r['peak_mb']:>9.0f}")
        if have_torch:
            t = run_worker("torch", net, args.warmup, args.repeat, args.default_malloc)
            line += (f"{t['train_ms']:>10.1f}{b / t['train_ms'] * 1000:>8.0f}{b / t['infer_ms'] * 1000:>11.0f}"
                     f"{r['train_ms'] / t['train_ms']:>7.2f}{r['infer_ms'] / t['infer_ms']:>11.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
