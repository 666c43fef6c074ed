"""Train an npnet model from the command line: ``python train.py`` trains the default
MNIST network and ends by printing its test accuracy."""
import argparse
import logging
import math
import sys

import numpy as np

import data
from data.specs import AUGMENTATIONS, DATASETS
from layers import SoftmaxCrossEntropy
from layers.allocator import keep_freed_memory
from models import zoo
from models.callbacks import Checkpoint, DiagnosticsLog, JsonLog, ProgressBar
from models.checkpoint import load_model
from models.trainer import Trainer, TrainingStopped
from optim import SGD, Adam, AdamW, parse_schedule, schedule_from_string

log = logging.getLogger("npnet.train")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="mnist", help="data set to train on")
    p.add_argument("--model", choices=sorted(zoo.MODELS), default=None,
                   help="architecture (default: mnist_cnn for MNIST/Fashion-MNIST, cifar10_bn for CIFAR-10)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd", help="update rule")
    p.add_argument("--lr", type=float, default=0.05, help="base learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--schedule", default="cosine",
                   help="learning-rate schedule, stepped every iteration: constant | cosine | "
                        "step:EPOCHS:GAMMA | multistep:E1,E2,...:GAMMA | exp:GAMMA_PER_EPOCH | "
                        "inv:GAMMA:POWER (Caffe)")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up (cosine schedule)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")
    p.add_argument("--augment", choices=("auto",) + AUGMENTATIONS, default="auto",
                   help="augmentation (auto: the data set's default, translate for MNIST-like, "
                        "crop-flip for CIFAR-10)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many iterations in all (the schedule still plans for --epochs)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random generator")
    p.add_argument("--data-dir", default=None, help="data root (else $NPNET_DATA, else ~/.cache/npnet)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--save", default=None, help="checkpoint path, written atomically after every epoch")
    p.add_argument("--resume", default=None, help="continue training exactly from this checkpoint")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the model given by --load")
    p.add_argument("--load", default=None, help="model or checkpoint to evaluate with --eval-only")
    p.add_argument("--log", default=None, help="append one JSON line per epoch to this file")
    p.add_argument("--diagnostics", action="store_true",
                   help="per epoch: dead ReLU units, gradient norms, update/weight ratios")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write PNG figures (curves, confusion matrix, filters, mistakes); needs matplotlib")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check_args(p, args):
    """Reject invalid combinations before anything is loaded (``p.error`` exits with 2)."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("limit", "test_limit", "max_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.lr <= 0:
        p.error("--lr must be positive")
    if args.eval_only and not args.load:
        p.error("--eval-only needs --load PATH")
    try:
        parse_schedule(args.schedule)
    except ValueError as err:
        p.error(f"bad --schedule: {err}")


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def load_data(args, spec):
    (xtr, ytr), (xte, yte) = spec.load(args.data_dir, download_missing=not args.no_download)
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    if args.test_limit:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    return xtr, ytr, xte, yte


def augmenter(args, spec):
    kind = spec.augment if args.augment == "auto" else args.augment
    return {"none": None, "translate": data.augment_translate, "crop-flip": data.augment_cifar}[kind]


def make_optimizer(args, model):
    if args.optimizer == "sgd":
        return SGD(model.params, args.lr, momentum=args.momentum, nesterov=args.nesterov,
                   weight_decay=args.weight_decay)
    cls = Adam if args.optimizer == "adam" else AdamW
    return cls(model.params, args.lr, weight_decay=args.weight_decay)


def make_callbacks(args, model_name, spec, model, xte, yte):
    """Progress bar, then diagnostics (they add to the record), log, checkpoint, figures."""
    callbacks = [ProgressBar(disable=args.quiet or None)]
    if args.diagnostics:
        callbacks.append(DiagnosticsLog(model))
    if args.log:
        callbacks.append(JsonLog(args.log))
    if args.save:
        callbacks.append(Checkpoint(args.save, {"model": model_name, "dataset": args.dataset}))
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


def evaluate_only(args, spec, x, y):
    result = Trainer(load_model(args.load), SoftmaxCrossEntropy(), None).evaluate(x, y)
    log.info("test loss %.4f  test accuracy %.2f%%", result.loss, 100 * result.accuracy)
    log.info("%s", report(result, spec.classes))
    return result.accuracy


def make_trainer(args, spec, model_name, xtr, xte, yte):
    if keep_freed_memory():
        log.debug("glibc malloc set to keep freed memory for reuse")
    model = zoo.build(model_name, spec.input_shape, spec.num_classes, rng=np.random.default_rng(args.seed))
    opt = make_optimizer(args, model)
    steps_per_epoch = math.ceil(len(xtr) / args.batch_size)
    sched = schedule_from_string(args.schedule, opt, steps_per_epoch, steps_per_epoch * args.epochs,
                                 args.warmup_epochs)
    return Trainer(model, SoftmaxCrossEntropy(args.label_smoothing), opt, sched,
                   rng=np.random.default_rng([args.seed, 1]), eval_loss=SoftmaxCrossEntropy(),
                   callbacks=make_callbacks(args, model_name, spec, model, xte, yte))


def train(args):
    """Run what ``args`` asks for; returns the final test accuracy."""
    spec = DATASETS[args.dataset]
    model_name = args.model or spec.model
    xtr, ytr, xte, yte = load_data(args, spec)
    if args.eval_only:
        return evaluate_only(args, spec, xte, yte)
    trainer = make_trainer(args, spec, model_name, xtr, xte, yte)
    if args.resume:
        progress = trainer.resume(args.resume)
        log.info("resumed from %s at epoch %d, step %d", args.resume, progress["epoch"] + 1,
                 progress["step_in_epoch"])
    trainer.fit(xtr, ytr, args.epochs, args.batch_size, augment=augmenter(args, spec),
                validation=(xte, yte), max_steps=args.max_steps)
    if trainer.interrupted:
        saved = f": checkpoint saved to {args.save} (resume with --resume)" if args.save else ""
        log.info("interrupted%s", saved)
        return trainer.history[-1]["test_acc"] if trainer.history else float("nan")
    result = trainer.evaluate(xte, yte)
    log.info("%s", report(result, spec.classes))
    log.info("test accuracy: %.2f%%", 100 * result.accuracy)
    return result.accuracy


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.plot:
        import plots
        try:
            plots.require_matplotlib()
        except ImportError as err:
            log.error("error: --plot: %s", err)
            return 2
    try:
        train(args)
    except (data.DownloadError, data.DataFileError, FileNotFoundError, ValueError) as err:
        log.error("error: %s", err)
        return 2
    except TrainingStopped as err:
        log.error("stopped: %s", err)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
