"""Train an npnet model from the command line: ``python train.py`` trains the default
MNIST network and ends by printing its test accuracy.

``mpiexec -n K python train.py ...`` trains data-parallel on K processes."""
import signal
import sys


def _exit_quietly(signum, frame):
    """Ctrl-C while the libraries load or the options are read: nothing has started yet."""
    sys.exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _exit_quietly)  # until main() reaches the run itself

from distributed.threads import limit_blas_threads

limit_blas_threads()  # under an MPI launcher: each rank's share of the cores, before numpy loads

import argparse
import logging
import math
import os

import numpy as np

import data
from data.specs import AUGMENTATIONS, DATASETS
from layers import Dense, SoftmaxCrossEntropy
from layers.allocator import keep_freed_memory
from models import zoo
from models.archive import check_destination
from models.callbacks import Checkpoint, DiagnosticsLog, JsonLog, ProgressBar
from models.checkpoint import load_model
from models.serialization import read_archive
from models.trainer import Trainer, TrainingStopped
from optim import SGD, Adam, AdamW, parse_schedule, schedule_from_string

log = logging.getLogger("npnet.train")

DEFAULT_LR = 0.05
# options whose default depends on others, or that only some optimizers or schedules read:
# their parser default is None, so that an explicit value can be told apart and refused
# where it does not apply; parse_args then fills in these values
DEFAULTS = {"momentum": 0.9, "warmup_epochs": 0.0}
# options that only mean something when training (refused with --eval-only)
TRAINING_ONLY = ("save", "resume", "log", "diagnostics", "plot", "limit", "max_steps")
# what a checkpoint must agree on to be resumed; --epochs, --max-steps, --test-limit,
# --seed (its generators are restored) and the output options may change
RESUME_MUST_MATCH = ("model", "dataset", "optimizer", "batch_size", "momentum", "nesterov", "weight_decay",
                     "label_smoothing", "schedule", "warmup_epochs", "augment")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to each option's help, except for flags and where the
    default is None: those options state their default in their own help text."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="mnist", help="data set to train on")
    p.add_argument("--model", choices=sorted(zoo.MODELS), default=None,
                   help="architecture (default: mnist_cnn for MNIST/Fashion-MNIST, cifar10_bn for CIFAR-10)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd", help="update rule")
    p.add_argument("--lr", type=float, default=None,
                   help=f"base learning rate (default: {DEFAULT_LR}); with --resume it must be omitted or "
                        "equal the checkpoint's")
    p.add_argument("--momentum", type=float, default=None,
                   help=f"momentum, --optimizer sgd only (default: {DEFAULTS['momentum']})")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum, --optimizer sgd only")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--schedule", default="cosine",
                   help="learning-rate schedule, stepped every iteration: constant | cosine | "
                        "step:EPOCHS:GAMMA | multistep:E1,E2,...:GAMMA | exp:GAMMA_PER_EPOCH | "
                        "inv:GAMMA:POWER (Caffe)")
    p.add_argument("--warmup-epochs", type=float, default=None,
                   help=f"linear warm-up, --schedule cosine only (default: {DEFAULTS['warmup_epochs']})")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")
    p.add_argument("--augment", choices=("auto",) + AUGMENTATIONS, default="auto",
                   help="augmentation (auto: the data set's default, translate for MNIST-like, "
                        "crop-flip for CIFAR-10)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many iterations in all (the schedule still plans for --epochs)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random generator (>= 0)")
    p.add_argument("--data-dir", default=None,
                   help="data root (default: $NPNET_DATA, else ~/.cache/npnet)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--save", default=None, help="checkpoint path, written atomically after every epoch")
    p.add_argument("--resume", default=None, help="continue training exactly from this checkpoint")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the model given by --load")
    p.add_argument("--load", default=None, help="model or checkpoint to evaluate (only with --eval-only)")
    p.add_argument("--log", default=None, help="append one JSON line per epoch to this file")
    p.add_argument("--diagnostics", action="store_true",
                   help="per epoch: dead ReLU units, gradient norms, update/weight ratios")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write PNG figures (curves, confusion matrix, filters, mistakes); needs matplotlib")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="under mpiexec: BatchNorm statistics of the global batch, not of each process's part")
    p.add_argument("--mpi-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="under mpiexec: stop the job when a rank waits this long for the others "
                        "(at the start, once each has read its data, and at every step)")
    return p


def flag(name):
    return "--" + name.replace("_", "-")


def check_numbers(p, args):
    """Every number in range and finite (``p.error`` exits with 2)."""
    for name in ("epochs", "batch_size", "limit", "test_limit", "max_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"{flag(name)} must be positive")
    for name in ("lr", "momentum", "weight_decay", "label_smoothing", "warmup_epochs"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            p.error(f"{flag(name)} must be a finite number, got {value}")
        if value is not None and value < 0:
            p.error(f"{flag(name)} must not be negative, got {value}")
    if args.lr == 0:
        p.error("--lr must be positive")
    if not (math.isfinite(args.mpi_timeout) and args.mpi_timeout > 0):
        p.error(f"--mpi-timeout must be a positive number of seconds, got {args.mpi_timeout}")
    if args.momentum is not None and args.momentum >= 1:
        p.error(f"--momentum must be below 1 (the momentum buffer must decay), got {args.momentum}")
    if args.label_smoothing >= 1:
        p.error(f"--label-smoothing must be below 1, got {args.label_smoothing}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0 (numpy seeds are non-negative integers), got {args.seed}")
    if args.nesterov and args.momentum == 0:
        p.error("--nesterov needs --momentum > 0")
    try:
        name, _ = parse_schedule(args.schedule)
    except ValueError as err:
        p.error(f"bad --schedule: {err}")
    if name == "cosine" and args.warmup_epochs is not None and args.warmup_epochs >= args.epochs:
        p.error(f"--warmup-epochs ({args.warmup_epochs}) must be less than --epochs ({args.epochs})")


def check_modes(p, args):
    """Options that cannot go together are refused, never silently ignored."""
    if args.eval_only:
        if not args.load:
            p.error("--eval-only needs --load PATH")
        given = [flag(n) for n in TRAINING_ONLY if getattr(args, n) not in (None, False)]
        if given:
            p.error(f"{', '.join(given)}: training options, not used with --eval-only")
    elif args.load:
        p.error("--load is read only with --eval-only; to continue training a checkpoint use --resume")
    if args.optimizer != "sgd":
        given = [f for f, v in (("--momentum", args.momentum), ("--nesterov", args.nesterov))
                 if v is not None and v is not False]
        if given:
            p.error(f"{', '.join(given)}: SGD options, not used with --optimizer {args.optimizer}")
    if args.warmup_epochs is not None and parse_schedule(args.schedule)[0] != "cosine":
        p.error(f"--warmup-epochs: read only by --schedule cosine, not {args.schedule}")


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    check_numbers(p, args)
    check_modes(p, args)
    for name, value in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def check_files(args, writes=True):
    """Every file the run will read or write, checked before any data is loaded: a probe
    file is created and removed where each output goes (models.archive.check_destination),
    unless ``writes`` is False (a rank that writes nothing)."""
    outputs = [("--save", args.save), ("--log", args.log)] if writes else []
    if args.plot and writes:  # a directory, created if missing: probe inside it, or next to it
        inside = os.path.isdir(args.plot)
        outputs.append(("--plot", os.path.join(args.plot, "curves.png") if inside else args.plot))
        if os.path.exists(args.plot) and not inside:
            raise ValueError(f"--plot: cannot write {args.plot}: it is a file, not a directory")
    for option, path in outputs:
        try:
            if path:
                check_destination(path)
                if os.path.isfile(path) and option == "--log":
                    open(path, "ab").close()
        except OSError as err:
            raise ValueError(f"{option}: {err.strerror or err}") from None
    for name in ("resume", "load"):
        path = getattr(args, name)
        if path and os.path.isdir(path):
            raise ValueError(f"{flag(name)} {path}: is a directory; expected a checkpoint or model file (.npz)")
        if path and not os.path.isfile(path):
            raise ValueError(f"{flag(name)} {path}: no such file")


def check_batch_of_one(args, spec, ranks=1, train_size=None):
    """A run in which some step normalises one image alone is refused before it trains
    when the network cannot train on one image (batch statistics of a single value):
    ``--batch-size 1`` or ``--limit 1``, or, on ``ranks`` MPI processes without
    ``--sync-batchnorm``, a batch whose share on some rank is one image. Called before the
    data is read (the batches the options imply) and after (``train_size``: the last batch
    of the real training set). A throwaway copy of the network takes one training-mode
    step forward on one image to find out."""
    n = train_size if train_size is not None else args.limit
    batches = {min(args.batch_size, n or args.batch_size)}
    if n:  # the last batch, as the Trainer cuts an epoch (a single image joins the one before)
        batches.add(n - (Trainer.epoch_steps(n, args.batch_size) - 1) * args.batch_size)
    local = ranks > 1 and not args.sync_batchnorm  # each rank normalises its own share

    def shares(batch):
        base, extra = divmod(batch, ranks) if local else (batch, 0)
        return {base, base + 1} if extra else {base}

    if not any(1 in shares(b) for b in batches):
        return
    model = zoo.build(args.model or spec.model, spec.input_shape, spec.num_classes, rng=0)
    try:
        model.forward(np.zeros((1,) + tuple(spec.input_shape), np.float32))
    except ValueError as err:
        if local and 1 not in batches:
            last = "" if args.batch_size in batches and 1 in shares(args.batch_size) else \
                f" (the last batch of each epoch holds {max(batches - {args.batch_size})})"
            raise ValueError(f"--batch-size {args.batch_size} on {ranks} ranks: some rank's share of a batch{last} "
                             f"holds one image, and {err}; use another batch size or --sync-batchnorm") from None
        which = "--batch-size 1" if args.batch_size == 1 else "--limit 1"
        raise ValueError(f"{which}: every batch holds one image, and {err}; use two or more") from None


def load_data(args, spec):
    (xtr, ytr), (xte, yte) = spec.load(args.data_dir, download_missing=not args.no_download)
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    if args.test_limit:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    return xtr, ytr, xte, yte


def augmentation(args, spec):
    return spec.augment if args.augment == "auto" else args.augment


def augmenter(name):
    return {"none": None, "translate": data.augment_translate, "crop-flip": data.augment_cifar}[name]


def make_optimizer(args, model):
    lr = DEFAULT_LR if args.lr is None else args.lr
    if args.optimizer == "sgd":
        return SGD(model.params, lr, momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay)
    cls = Adam if args.optimizer == "adam" else AdamW
    return cls(model.params, lr, weight_decay=args.weight_decay)


def run_info(args, spec, train_size):
    """What a checkpoint records about its run, to check a --resume against."""
    info = {name: getattr(args, name) for name in RESUME_MUST_MATCH}
    info.update(model=args.model or spec.model, augment=augmentation(args, spec), train_size=train_size,
                lr=DEFAULT_LR if args.lr is None else args.lr, epochs=args.epochs)
    return info


def check_resume(args, saved, run, mid_epoch):
    """Refuse a checkpoint whose run differs from this one; the message lists what differs."""
    keys = [k for k in RESUME_MUST_MATCH + ("train_size",) if k in saved]
    if not mid_epoch:
        keys = [k for k in keys if k != "train_size"]
    if args.lr is not None and "lr" in saved:
        keys.append("lr")
    differ = [f"{'--limit (training images)' if k == 'train_size' else flag(k)} {saved[k]} in the checkpoint, "
              f"{run[k]} now" for k in keys if saved[k] != run[k]]
    if differ:
        raise ValueError(f"--resume {args.resume}: the checkpoint does not match this run: {'; '.join(differ)}")
    if parse_schedule(args.schedule)[0] == "cosine" and saved.get("epochs", args.epochs) != args.epochs:
        log.warning("--resume %s: the cosine schedule was planned for --epochs %s and now follows "
                    "--epochs %s from this step (give --epochs %s to keep the plan)",
                    args.resume, saved["epochs"], args.epochs, saved["epochs"])


def make_callbacks(args, spec, model, xte, yte, info):
    """Progress bar, then diagnostics (they add to the record), log, checkpoint, figures."""
    callbacks = [ProgressBar(disable=args.quiet or None)]
    if args.diagnostics:
        callbacks.append(DiagnosticsLog(model))
    if args.log:
        callbacks.append(JsonLog(args.log))
    if args.save:
        callbacks.append(Checkpoint(args.save, info))
    if args.plot:
        import plots
        callbacks.append(plots.Figures(args.plot, xte, yte, spec))
    return callbacks


def report(result, classes):
    """Per-class accuracy and the confusion matrix of an ``Evaluation``, as text."""
    cm, k = result.confusion, len(classes)
    lines = ["per-class accuracy:"]
    lines += [f"  {i} {name:<12} {acc:7.2%}  ({cm[i].sum()} images)" for i, (name, acc) in
              enumerate(zip(classes, result.per_class_accuracy()))]
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append("      " + "".join(f"{j:>6}" for j in range(k)))
    lines += [f"{i:>6}" + "".join(f"{v:>6}" for v in row) for i, row in enumerate(cm)]
    return "\n".join(lines)


def fit_input(model, x, source):
    """``x`` in the shape the loaded model reads: flattened for a model that starts with
    a Dense layer, for example; a clear error when the sizes cannot match."""
    want = getattr(model, "input_shape", None)
    first = model.layers[0] if getattr(model, "layers", None) else model
    if want is None and isinstance(first, Dense):
        want = (first.in_features,)
    if want is None or tuple(want) == x.shape[1:]:
        return x
    if math.prod(want) == math.prod(x.shape[1:]):
        return x.reshape(len(x), *want)
    raise ValueError(f"{source}: the model reads inputs of shape {tuple(want)}, the data set's images are "
                     f"{x.shape[1:]}")


def evaluate_only(args, spec, strategy):
    model = load_model(args.load)
    x, y = spec.load_test(args.data_dir, download_missing=not args.no_download)
    if args.test_limit:
        x, y = x[:args.test_limit], y[:args.test_limit]
    x = fit_input(model, x, args.load)
    scores = tuple(model.output_shape(x.shape[1:]))
    if scores != (spec.num_classes,):
        raise ValueError(f"{args.load}: the model gives outputs of shape {scores} per image; {args.dataset} "
                         f"needs {spec.num_classes} class scores, shape ({spec.num_classes},)")
    result = Trainer(model, SoftmaxCrossEntropy(), None, strategy=strategy).evaluate(x, y)
    log.info("test loss %.4f  test accuracy %.2f%%", result.loss, 100 * result.accuracy)
    log.info("%s", report(result, spec.classes))
    return result.accuracy


def make_strategy(args):
    """MPIStrategy when started by an MPI launcher (mpiexec -n K), else None (one process)."""
    import distributed
    if not distributed.launched_by_mpi():
        return None
    return distributed.MPIStrategy(timeout_s=args.mpi_timeout)


def make_trainer(args, spec, xtr, xte, yte, strategy):
    if keep_freed_memory():
        log.debug("glibc malloc set to keep freed memory for reuse")
    info = run_info(args, spec, len(xtr))
    model = zoo.build(info["model"], spec.input_shape, spec.num_classes, rng=np.random.default_rng(args.seed))
    if args.sync_batchnorm and strategy is None:
        log.warning("--sync-batchnorm has no effect in one process (start with mpiexec -n K)")
    if args.sync_batchnorm and strategy is not None:
        from distributed import convert_sync_batchnorm
        convert_sync_batchnorm(model, strategy.comm, strategy.timeout_s)
    opt = make_optimizer(args, model)
    steps_per_epoch = Trainer.epoch_steps(len(xtr), args.batch_size)
    sched = schedule_from_string(args.schedule, opt, steps_per_epoch, steps_per_epoch * args.epochs,
                                 args.warmup_epochs)
    return Trainer(model, SoftmaxCrossEntropy(args.label_smoothing), opt, sched,
                   rng=np.random.default_rng([args.seed, 1]), eval_loss=SoftmaxCrossEntropy(),
                   callbacks=make_callbacks(args, spec, model, xte, yte, info), strategy=strategy), info


def resume(trainer, args, info):
    _, meta = read_archive(args.resume)
    saved, progress = meta.get("info"), meta.get("progress")
    if isinstance(saved, dict) and isinstance(progress, dict):
        check_resume(args, saved, info, progress.get("step_in_epoch", 0) > 0)
    progress = trainer.resume(args.resume)
    log.info("resumed from %s at epoch %d, step %d", args.resume, progress["epoch"] + 1, progress["step_in_epoch"])


class Interrupted(KeyboardInterrupt):
    """Ctrl-C outside the point where training stops cleanly; the message says what was kept,
    ``signum`` the signal (the exit status is 128 + it)."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


def run(args, strategy=None):
    """Run what ``args`` asks for (on the processes of ``strategy``, default one);
    returns ``(test accuracy, signal that stopped it or None)``. Ctrl-C where training
    cannot stop cleanly raises :class:`Interrupted`."""
    spec = DATASETS[args.dataset]
    if args.eval_only:
        check_files(args, writes=strategy is None or strategy.is_root)
        return evaluate_only(args, spec, strategy), None
    try:
        check_files(args, writes=strategy is None or strategy.is_root)
        ranks = 1 if strategy is None else strategy.size
        check_batch_of_one(args, spec, ranks)
        xtr, ytr, xte, yte = load_data(args, spec)
        check_batch_of_one(args, spec, ranks, train_size=len(xtr))
        trainer, info = make_trainer(args, spec, xtr, xte, yte, strategy)
        if args.resume:
            resume(trainer, args, info)
    except KeyboardInterrupt:
        raise Interrupted("interrupted before training started; nothing saved") from None
    try:
        trainer.fit(xtr, ytr, args.epochs, args.batch_size, augment=augmenter(info["augment"]),
                    validation=(xte, yte), max_steps=args.max_steps)
    except KeyboardInterrupt:
        raise Interrupted("stopped at once by a second signal; the last checkpoint is the previous one",
                          trainer.stop_signal or signal.SIGINT) from None
    if trainer.interrupted:
        saved = f": checkpoint saved to {args.save} (resume with --resume)" if args.save else ""
        log.info("interrupted by %s%s", signal.Signals(trainer.stop_signal).name, saved)
        return (trainer.history[-1]["test_acc"] if trainer.history else float("nan")), trainer.stop_signal
    result = trainer.evaluate(xte, yte)
    log.info("%s", report(result, spec.classes))
    log.info("test accuracy: %.2f%%", 100 * result.accuracy)
    return result.accuracy, None


def train(args):
    """Run what ``args`` asks for; returns the final test accuracy."""
    return run(args)[0]


def main(argv=None):
    """The command line; exit status 0 done, 2 bad input or a failed read/write,
    3 non-finite values, 128 + the signal's number when SIGINT/SIGTERM stopped it."""
    args = parse_args(argv)
    try:
        strategy = make_strategy(args)
    except ImportError as err:
        logging.basicConfig(format="%(message)s", stream=sys.stdout)
        log.error("error: %s", err)
        return 2
    several = strategy is not None and strategy.size > 1
    # rank 0 reports; the others only their errors, marked with their rank
    logging.basicConfig(level=logging.INFO if strategy is None or strategy.is_root else logging.WARNING,
                        format=f"[rank {strategy.rank}] %(message)s" if several and not strategy.is_root
                        else "%(message)s", stream=sys.stdout)
    if args.plot:
        import plots
        try:
            plots.require_matplotlib()
        except ImportError as err:
            log.error("error: --plot: %s", err)
            return 2
    if signal.getsignal(signal.SIGINT) is _exit_quietly:  # from here on Ctrl-C is the run's to handle
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _, stopped_by = run(args, strategy)
    except (data.DownloadError, data.DataFileError, OSError, ValueError, RuntimeError) as err:
        log.error("error: %s", err)
        if several:  # the other ranks may be waiting for this one: stop them all
            strategy.abort(2)
        return 2
    except TrainingStopped as err:  # every rank stops at the same step
        log.error("stopped: %s", err)
        return 3
    except Interrupted as err:
        log.error("%s", err)
        return 128 + err.signum
    except KeyboardInterrupt:
        log.error("interrupted during the evaluation%s", "" if args.eval_only else " after training")
        return 130
    return 0 if stopped_by is None else 128 + stopped_by


if __name__ == "__main__":
    sys.exit(main())
