"""The benchmark scripts run and print what their docstrings promise (their figures are not checked)."""
import os
import subprocess
import sys

from conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(*args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", args[0]), *args[1:]],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_bench_models_rounds_give_one_line_per_network_and_each_round_s_ratios():
    lines = run_script("bench_models.py", "--nets", "lenet", "--repeat", "1", "--warmup", "0",
                       "--rounds", "2", "--no-torch", "--no-distributed")
    header = next(i for i, line in enumerate(lines) if line.startswith("network"))
    row = lines[header + 1].split()
    assert row[:2] == ["lenet", "64"] and len(row) == 6, lines
    assert float(row[2]) > 0 and int(row[3]) > 0, row
    assert len(lines) == header + 2, lines  # no ratio to list per round without the other columns


def test_bench_models_lists_the_distributed_speedup_of_each_round():
    require("mpi4py")  # the distributed column needs the [mpi] extra
    lines = run_script("bench_models.py", "--nets", "lenet", "--repeat", "1", "--warmup", "0",
                       "--rounds", "2", "--no-torch", "--ranks", "2")
    header = next(i for i, line in enumerate(lines) if line.startswith("network"))
    assert "2rk ms" in lines[header] and len(lines[header + 1].split()) == 9, lines
    assert lines[header + 2].startswith("ratios of each round (2 rounds"), lines
    speedups = lines[header + 3].split("speedup")[1].split()
    assert lines[header + 3].split()[0] == "lenet" and len(speedups) == 2, lines
    assert all(float(s) > 0 for s in speedups), lines


def test_bench_models_refuses_zero_rounds():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_models.py"), "--rounds", "0"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "--rounds must be at least 1" in out.stderr
