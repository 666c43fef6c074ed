"""Training-step time of two git revisions, measured in turns in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_revisions.py main HEAD

Each revision is exported (``git archive``) to a temporary directory. For every
round and network, each revision runs its own ``bench_models.py`` worker in a
fresh process (median training step after warm-up, train.py's allocator setting)
in turn, so both see the same machine load. Prints the median over rounds for
each revision and the ratio old / new (above 1: the second revision is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import NETWORKS  # noqa: E402


def export(revision, directory):
    """Write the tree of ``revision`` into ``directory``."""
    archive = os.path.join(directory, "tree.tar")
    subprocess.run(["git", "-C", ROOT, "archive", "-o", archive, revision], check=True)
    with tarfile.open(archive) as tar:
        # the "data" filter (Python >= 3.10.12) refuses links and paths out of the directory
        tar.extractall(directory, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    os.remove(archive)


def step_ms(tree, net, warmup, repeat):
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "bench_models.py"), "--worker", "npnet",
           "--net", net, "--warmup", str(warmup), "--repeat", str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])["train_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for name in (args.old, args.new):
            trees[name] = os.path.join(tmp, str(len(trees)))
            os.mkdir(trees[name])
            export(name, trees[name])
        times = {(net, name): [] for net in args.nets for name in trees}
        for r in range(args.rounds):
            for net in args.nets:
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for name in order:
                    times[net, name].append(step_ms(trees[name], net, args.warmup, args.repeat))
    print(f"training step, median over {args.rounds} rounds of the median of {args.repeat} steps")
    print(f"{'network':<15}{args.old[:12]:>14}{args.new[:12]:>14}{'old/new':>9}")
    for net in args.nets:
        old, new = (statistics.median(times[net, name]) for name in (args.old, args.new))
        print(f"{net:<15}{old:>11.1f} ms{new:>11.1f} ms{old / new:>9.2f}")


if __name__ == "__main__":
    main()
