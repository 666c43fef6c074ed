"""train.py under bad arguments and faults: every invalid value refused up front,
destinations checked before any data is read, a full disk, SIGTERM to a real process,
mismatched --resume, --eval-only without the training files, a single Dense model."""
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import layers as L
import train
from fixtures import write_mnist
from models import Sequential
from models.serialization import read_archive, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny(tmp_path):
    """A 256-image MNIST-format data set; the base arguments of a fast run on it."""
    write_mnist(tmp_path / "mnist", n_train=256, n_test=64)
    return ["--data-dir", str(tmp_path), "--no-download", "--quiet", "--model", "lenet", "--batch-size", "32",
            "--epochs", "1"]


def cli(args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def refused(capsys, args):
    """parse_args on args: the exit status and the error line."""
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err[-1]


@pytest.mark.parametrize("args,message", [
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must not be negative"),
    (["--momentum", "inf"], "--momentum must be a finite number, got inf"),
    (["--momentum", "-0.5"], "--momentum must not be negative"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--label-smoothing", "nan"], "--label-smoothing must be a finite number"),
    (["--label-smoothing", "1"], "--label-smoothing must be below 1"),
    (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number"),
    (["--warmup-epochs", "8"], "--warmup-epochs (8.0) must be less than --epochs (8)"),
    (["--schedule", "step:0:0.5"], "positive finite numbers"),
    (["--schedule", "step:-1:0.5"], "positive finite numbers"),
    (["--schedule", "step:inf:0.5"], "positive finite numbers"),
    (["--schedule", "exp:-1"], "positive finite numbers"),
    (["--schedule", "inv:inf:0.75"], "positive finite numbers"),
    (["--schedule", "multistep:3,2:0.1"], "milestones must be increasing"),
    (["--seed", "-1"], "--seed must be >= 0 (numpy seeds are non-negative integers)"),
    (["--mpi-timeout", "nan"], "--mpi-timeout must be a positive number of seconds, got nan"),
    (["--mpi-timeout", "0"], "--mpi-timeout must be a positive number of seconds"),
    (["--mpi-timeout", "-1"], "--mpi-timeout must be a positive number of seconds"),
    (["--mpi-timeout", "inf"], "--mpi-timeout must be a positive number of seconds"),
    (["--nesterov", "--momentum", "0"], "--nesterov needs --momentum > 0"),
    (["--momentum", "1"], "--momentum must be below 1 (the momentum buffer must decay), got 1.0"),
    (["--momentum", "1.5"], "--momentum must be below 1"),
    (["--load", "m.npz"], "--load is read only with --eval-only"),
    (["--eval-only", "--load", "m.npz", "--save", "s.npz"], "--save: training options, not used with --eval-only"),
    (["--eval-only", "--load", "m.npz", "--resume", "r.npz"], "--resume: training options"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum: SGD options, not used with --optimizer adam"),
    (["--optimizer", "adam", "--momentum", "0"], "--momentum: SGD options, not used with --optimizer adam"),
    (["--optimizer", "adamw", "--nesterov"], "--nesterov: SGD options, not used with --optimizer adamw"),
    (["--optimizer", "adam", "--momentum", "0.9", "--nesterov"], "--momentum, --nesterov: SGD options"),
    (["--schedule", "constant", "--warmup-epochs", "1"], "--warmup-epochs: read only by --schedule cosine"),
])
def test_invalid_values_are_refused_with_one_line(capsys, args, message):
    code, line = refused(capsys, args)
    assert code == 2 and message in line, line


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory where no file can be created (chmod for a user; /sys or /proc for root)."""
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    for d in ("/sys", "/proc"):
        try:
            fd, probe = tempfile.mkstemp(dir=d)
        except OSError:
            yield Path(d)
            return
        os.close(fd)
        os.remove(probe)
    pytest.skip("running as root with no unwritable directory to test against")


@pytest.mark.parametrize("option", ["--save", "--log", "--plot"])
@pytest.mark.parametrize("case", ["read-only", "parent is a file", "is a directory", "missing parent"])
def test_destinations_are_checked_before_any_data_is_read(tmp_path, unwritable_dir, caplog, option, case):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    target = {"read-only": unwritable_dir / "out", "parent is a file": tmp_path / "file" / "out",
              "is a directory": tmp_path / "dir", "missing parent": tmp_path / "missing" / "out"}[case]
    if option == "--plot" and case == "is a directory":
        target = tmp_path / "file"  # a plot destination must be a directory, not a file
    # no data in tmp_path: had anything been read first, the error would be "not found"
    code = train.main(["--data-dir", str(tmp_path / "empty"), "--no-download", option, str(target)])
    assert code == 2
    assert f"error: {option}: cannot write {target}" in caplog.text and "not found" not in caplog.text
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("option", ["--limit", "--batch-size"])
def test_a_batch_of_one_image_is_refused_before_any_data_is_read(tmp_path, caplog, option):
    # mnist_cnn's BatchNorm1D cannot take batch statistics of one value; no data in tmp_path
    code = train.main(["--data-dir", str(tmp_path / "empty"), "--no-download", option, "1"])
    assert code == 2
    assert f"error: {option} 1: every batch holds one image, and BatchNorm1D" in caplog.text
    assert "not found" not in caplog.text


@pytest.mark.parametrize("options, ranks, refused", [
    (["--batch-size", "2"], 2, True), (["--batch-size", "3"], 2, True), (["--batch-size", "4"], 2, False),
    (["--batch-size", "2", "--sync-batchnorm"], 2, False), (["--batch-size", "5"], 3, True),
    (["--batch-size", "4", "--limit", "6"], 2, True),  # the last batch of 2: one image per rank
    (["--batch-size", "4", "--limit", "5"], 2, False),  # a last batch of one joins the one before
    (["--batch-size", "2", "--model", "lenet"], 2, False)])  # no batch statistics
def test_a_rank_s_share_of_one_image_is_refused_before_any_data_is_read(options, ranks, refused):
    args = train.parse_args(options)
    spec = train.DATASETS[args.dataset]
    if refused:
        with pytest.raises(ValueError, match=rf"on {ranks} ranks: some rank's share of a batch.* holds one "
                                             r"image, and BatchNorm1D.*--sync-batchnorm"):
            train.check_batch_of_one(args, spec, ranks)
    else:
        train.check_batch_of_one(args, spec, ranks)


@pytest.mark.parametrize("train_size, refused", [(11, True), (12, False), (9, False), (60000, False)])
def test_the_last_batch_of_the_real_training_set_is_checked_once_it_is_read(train_size, refused):
    # batches of 4 on 2 ranks: 11 images end with a batch of 3, one image on a rank; 9 end
    # with a single image, which joins the batch before it
    args = train.parse_args(["--batch-size", "4"])
    spec = train.DATASETS[args.dataset]
    if refused:
        with pytest.raises(ValueError, match=r"--batch-size 4 on 2 ranks: some rank's share of a batch \(the "
                                             r"last batch of each epoch holds 3\) holds one image"):
            train.check_batch_of_one(args, spec, 2, train_size=train_size)
    else:
        train.check_batch_of_one(args, spec, 2, train_size=train_size)


def test_a_network_without_batch_statistics_trains_on_one_image(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=8, n_test=4)
    acc = train.train(train.parse_args(["--data-dir", str(tmp_path), "--no-download", "--quiet", "--model",
                                        "lenet", "--limit", "1", "--epochs", "1"]))
    assert np.isfinite(acc)


def test_ctrl_c_while_the_libraries_load_exits_quietly(tmp_path):
    # a stand-in for numpy that announces itself and then takes its time, as a cold import can
    (tmp_path / "numpy.py").write_text("import sys, time\nprint('loading', flush=True)\ntime.sleep(60)\n")
    proc = cli(["--epochs", "1"], env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.stdout.readline().strip() == "loading"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert err == "" and out == ""


def test_lr_1e40_stops_with_a_message_and_keeps_the_checkpoint(tiny, tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"last good checkpoint")
    proc = cli(tiny + ["--lr", "1e40", "--save", str(ck)])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    assert "stopped: non-finite values at epoch 1, step 1: parameter 0.weight after the optimizer update" in out
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert ck.read_bytes() == b"last good checkpoint"


def limit_file_size(size):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tiny, tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"previous checkpoint")
    proc = cli(tiny + ["--save", str(ck)], preexec_fn=limit_file_size(64 * 1024))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, out + err
    assert f"error: cannot write {ck}: File too large; {ck} is unchanged" in out
    assert "Traceback" not in err
    assert ck.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "mnist"]  # no temporary file left


def test_full_disk_during_a_log_write_leaves_whole_lines(tiny, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"epoch": 0}\n' * 2)
    proc = cli(tiny + ["--log", str(log)], preexec_fn=limit_file_size(len(log.read_bytes()) + 40))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, out + err
    assert f"error: cannot append to the log {log}: File too large" in out and "Traceback" not in err
    assert log.read_bytes() == b'{"epoch": 0}\n' * 2


def test_sigterm_to_a_real_process_saves_and_resumes(tiny, tmp_path):
    ck, log = tmp_path / "ck.npz", tmp_path / "log.jsonl"
    base = [a if a != "1" else "100" for a in tiny]  # --epochs 100: it is still training when signalled
    proc = cli(base + ["--save", str(ck), "--log", str(log)])
    deadline = time.monotonic() + 240
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert f"interrupted by SIGTERM: checkpoint saved to {ck}" in out and "Traceback" not in err
    step = read_archive(ck)[1]["progress"]["global_step"]
    assert step >= 8  # at least the first epoch (8 steps) was done
    assert train.main(base + ["--resume", str(ck), "--save", str(ck), "--max-steps", str(step + 2)]) == 0
    assert read_archive(ck)[1]["progress"]["global_step"] == step + 2


@pytest.mark.parametrize("option", ["--resume", "--load"])
def test_a_missing_or_directory_checkpoint_is_named_before_any_data_is_read(tmp_path, caplog, option):
    extra = ["--eval-only"] if option == "--load" else []
    base = ["--data-dir", str(tmp_path / "no-data"), "--no-download", "--quiet"] + extra
    (tmp_path / "dir").mkdir()
    for target, message in [(tmp_path / "dir", "is a directory; expected a checkpoint or model file (.npz)"),
                            (tmp_path / "missing.npz", "no such file")]:
        caplog.clear()
        assert train.main(base + [option, str(target)]) == 2
        assert f"{option} {target}: {message}" in caplog.text, caplog.text
        assert "not found" not in caplog.text  # refused before the (missing) data was looked for


def test_resume_refuses_another_run_and_names_the_difference(tiny, tmp_path, caplog):
    ck = tmp_path / "ck.npz"
    assert train.main(tiny + ["--save", str(ck), "--max-steps", "3"]) == 0  # mid-epoch: 3 of 8 steps
    saved = ck.read_bytes()
    for extra, message in [(["--batch-size", "16"], "--batch-size 32 in the checkpoint, 16 now"),
                           (["--model", "mnist_cnn"], "--model lenet in the checkpoint, mnist_cnn now"),
                           (["--optimizer", "adam"], "--optimizer sgd in the checkpoint, adam now"),
                           (["--limit", "128"], "--limit (training images) 256 in the checkpoint, 128 now"),
                           (["--lr", "0.1"], "--lr 0.05 in the checkpoint, 0.1 now")]:
        caplog.clear()
        assert train.main(tiny + extra + ["--resume", str(ck), "--save", str(ck)]) == 2, extra
        assert f"--resume {ck}: the checkpoint does not match this run: {message}" in caplog.text
        assert ck.read_bytes() == saved
    # what may change: --epochs, --max-steps, outputs; --lr equal to the checkpoint's
    caplog.clear()
    assert train.main(tiny + ["--epochs", "2", "--lr", "0.05", "--resume", str(ck), "--save", str(ck)]) == 0
    assert read_archive(ck)[1]["progress"]["epoch"] == 2
    assert "the cosine schedule was planned for --epochs 1 and now follows --epochs 2" in caplog.text


def test_eval_only_needs_only_the_test_files_and_takes_a_single_dense_model(tiny, tmp_path, caplog):
    ck = tmp_path / "ck.npz"
    assert train.main(tiny + ["--save", str(ck)]) == 0
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        os.remove(tmp_path / "mnist" / name)
    evaluate = ["--data-dir", str(tmp_path), "--no-download", "--eval-only", "--load"]
    assert train.main(evaluate + [str(ck)]) == 0
    dense = tmp_path / "dense.npz"
    save_model(L.Dense(784, 10, rng=0), dense)
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert train.main(evaluate + [str(dense)]) == 0
    assert "test accuracy" in caplog.text
    save_model(L.Dense(100, 10, rng=0), dense)
    assert train.main(evaluate + [str(dense)]) == 2
    assert f"{dense}: the model reads inputs of shape (100,), the data set's images are (1, 28, 28)" in caplog.text
    for model, scores in [(L.Dense(784, 12, rng=0), "(12,)"), (L.Dense(784, 5, rng=0), "(5,)"),
                          (Sequential(L.Conv2D(1, 10, 28, rng=0)), "(10, 1, 1)")]:
        save_model(model, dense)
        caplog.clear()
        assert train.main(evaluate + [str(dense)]) == 2
        assert (f"{dense}: the model gives outputs of shape {scores} per image; mnist needs 10 class scores, "
                f"shape (10,)") in caplog.text, caplog.text


def test_last_batch_of_one_image_does_not_stop_a_batchnorm_network(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=65, n_test=20)
    acc = train.train(train.parse_args(["--data-dir", str(tmp_path), "--no-download", "--quiet", "--model",
                                        "mnist_cnn", "--batch-size", "32", "--epochs", "1"]))
    assert np.isfinite(acc)


@pytest.mark.parametrize("args, momentum, warmup", [
    (["--optimizer", "adam"], 0.9, 0.0), (["--optimizer", "adamw", "--schedule", "constant"], 0.9, 0.0),
    (["--momentum", "0.5", "--nesterov", "--warmup-epochs", "1"], 0.5, 1.0)])
def test_options_left_at_their_defaults_apply_to_any_optimizer(args, momentum, warmup):
    parsed = train.parse_args(args)
    assert (parsed.momentum, parsed.warmup_epochs) == (momentum, warmup)


def test_help_shows_each_default_once():
    text = train.build_parser().format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    entries = {}  # option -> its help entry, on one line
    for line in text.split("\n  -")[1:]:
        entries[line.split()[0].lstrip("-")] = " ".join(line.split())
    for option, default in [("model", "mnist_cnn"), ("lr", "0.05"), ("momentum", "0.9"),
                            ("warmup-epochs", "0.0"), ("epochs", "8"), ("data-dir", "$NPNET_DATA")]:
        assert entries[option].count("default") == 1 and default in entries[option], entries[option]


def test_ctrl_c_before_training_says_nothing_was_saved(tiny, tmp_path, monkeypatch, caplog):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "load_data", interrupted)
    assert train.main(tiny + ["--save", str(tmp_path / "ck.npz")]) == 130
    assert "interrupted before training started; nothing saved" in caplog.text
    assert "second signal" not in caplog.text
    assert not (tmp_path / "ck.npz").exists()


def test_a_second_ctrl_c_during_training_is_reported_as_such(tiny, monkeypatch, caplog):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train.Trainer, "fit", interrupted)
    assert train.main(tiny) == 130
    assert "stopped at once by a second signal" in caplog.text


def test_a_second_sigterm_exits_with_sigterm_s_status(tiny, monkeypatch, caplog):
    def interrupted(self, *args, **kwargs):
        self.interrupted, self.stop_signal = True, signal.SIGTERM  # what the second signal leaves
        raise KeyboardInterrupt
    monkeypatch.setattr(train.Trainer, "fit", interrupted)
    assert train.main(tiny) == 128 + signal.SIGTERM
    assert "stopped at once by a second signal" in caplog.text
