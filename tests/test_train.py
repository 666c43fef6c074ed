"""train.py end to end: real MNIST accuracy, exact resume, Ctrl-C, non-finite loss, CLI errors."""
import json
import re
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import data
import models
import train
from fixtures import write_cifar_archive
from models.checkpoint import load_model
from models.serialization import read_archive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def model_params(path):
    arrays, _ = read_archive(path)
    return {k: v for k, v in arrays.items() if k.startswith("model/")}


def test_real_mnist_slice_reaches_accuracy(mnist_dir, tmp_path):
    log = tmp_path / "log.jsonl"
    acc = train.train(train.parse_args(["--data-dir", mnist_dir, "--limit", "5000", "--test-limit", "2000",
                                        "--epochs", "3", "--quiet", "--log", str(log)]))
    assert acc > 0.96
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert set(lines[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "time_s"}


def common(mnist_dir, *extra):
    return ["--data-dir", mnist_dir, "--limit", "640", "--test-limit", "200", "--batch-size", "64",
            "--quiet", *extra]


@pytest.mark.parametrize("schedule", ["step:1:0.5", "cosine"])
def test_resume_equals_straight_through(mnist_dir, tmp_path, schedule):
    straight, stopped = tmp_path / "straight.npz", tmp_path / "stopped.npz"
    train.train(train.parse_args(common(mnist_dir, "--epochs", "2", "--schedule", schedule,
                                        "--save", str(straight))))
    if schedule == "cosine":  # its horizon is --epochs: plan 2, stop after the first epoch's 10 steps
        first = ["--epochs", "2", "--max-steps", "10"]
    else:  # an epoch-based schedule: train 1 epoch, then resume with --epochs 2
        first = ["--epochs", "1"]
    train.train(train.parse_args(common(mnist_dir, *first, "--schedule", schedule, "--save", str(stopped))))
    train.train(train.parse_args(common(mnist_dir, "--epochs", "2", "--schedule", schedule,
                                        "--resume", str(stopped), "--save", str(stopped))))
    a, b = model_params(straight), model_params(stopped)
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(mnist_dir, tmp_path, monkeypatch):
    straight, ck = tmp_path / "straight.npz", tmp_path / "ck.npz"
    args = common(mnist_dir, "--epochs", "1")
    train.train(train.parse_args(args + ["--save", str(straight)]))
    calls = {"n": 0}
    real = data.augment_translate

    def interrupt_at_step_4(x, rng):
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)
        return real(x, rng)

    monkeypatch.setattr(data, "augment_translate", interrupt_at_step_4)
    train.train(train.parse_args(args + ["--save", str(ck)]))
    _, meta = read_archive(ck)
    assert meta["progress"]["step_in_epoch"] == 4 and meta["progress"]["epoch"] == 0
    monkeypatch.setattr(data, "augment_translate", real)
    train.train(train.parse_args(args + ["--resume", str(ck), "--save", str(ck)]))
    a, b = model_params(straight), model_params(ck)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_same_seed_same_result(mnist_dir, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for path in (a, b):
        train.train(train.parse_args(common(mnist_dir, "--epochs", "1", "--max-steps", "3", "--save", str(path))))
    pa, pb = model_params(a), model_params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_non_finite_loss_stops_and_keeps_checkpoint(mnist_dir, tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"last good checkpoint")
    result = run_cli(*common(mnist_dir, "--model", "lenet", "--lr", "1e12", "--momentum", "0.99",
                             "--weight-decay", "0", "--save", str(ck)))
    assert result.returncode == 3, result.stdout + result.stderr
    assert re.search(r"non-finite (loss|gradient) at epoch 1, step \d+: ", result.stdout)
    assert "RuntimeWarning" not in result.stderr
    assert re.search(r"first non-finite values in the (forward|backward) of layer \d+ \(\w+\)", result.stdout), result.stdout
    assert "Traceback" not in result.stderr
    assert ck.read_bytes() == b"last good checkpoint"


def test_eval_only_and_saved_model(mnist_dir, tmp_path):
    ck = tmp_path / "ck.npz"
    train.train(train.parse_args(common(mnist_dir, "--epochs", "1", "--save", str(ck))))
    acc = train.train(train.parse_args(["--data-dir", mnist_dir, "--test-limit", "200", "--eval-only",
                                        "--load", str(ck)]))
    model = load_model(str(ck))
    model.save(tmp_path / "model.npz")
    assert models.load(tmp_path / "model.npz").num_parameters() == model.num_parameters()
    acc2 = train.train(train.parse_args(["--data-dir", mnist_dir, "--test-limit", "200", "--eval-only",
                                         "--load", str(tmp_path / "model.npz")]))
    assert acc == acc2 > 0.2  # chance is 0.1; one short epoch leaves BatchNorm statistics rough


def test_cifar_path_learns_generated_classes(tmp_path):
    write_cifar_archive(tmp_path / "cifar10", per_batch=100)
    acc = train.train(train.parse_args(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--model",
                                        "cifar10_quick", "--epochs", "3", "--batch-size", "50",
                                        "--optimizer", "adam", "--lr", "0.001", "--no-download", "--quiet"]))
    assert acc > 0.8  # chance is 0.1


def test_help_lists_the_options():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--dataset", "--model", "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum",
                   "--nesterov", "--weight-decay", "--schedule", "--seed", "--data-dir", "--limit", "--save",
                   "--resume", "--eval-only", "--load", "--log"):
        assert option in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs must be positive"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--schedule", "bogus"], "bad --schedule"),
    (["--lr", "abc"], "invalid float value"),
    (["--eval-only"], "--eval-only needs --load"),
])
def test_bad_arguments(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    result = run_cli("--data-dir", str(tmp_path), "--no-download")
    assert result.returncode == 2
    assert "train-images-idx3-ubyte.gz not found" in result.stdout
    assert "Traceback" not in result.stderr


def test_residual_cifar_network_is_selectable(tmp_path):
    write_cifar_archive(tmp_path / "cifar10", per_batch=20)
    log = tmp_path / "log.jsonl"
    train.train(train.parse_args(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--model", "resnet_small",
                                  "--epochs", "1", "--batch-size", "25", "--no-download", "--quiet",
                                  "--log", str(log)]))
    record = json.loads(log.read_text())
    assert record["epoch"] == 1 and np.isfinite(record["train_loss"])
