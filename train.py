"""Train an npnet model from the command line: ``python train.py`` trains the default
MNIST network and ends by printing its test accuracy."""
import argparse
import json
import logging
import math
import resource
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

import data
from layers import SoftmaxCrossEntropy
from layers.allocator import keep_freed_memory
from models import zoo
from models.checkpoint import load_checkpoint, load_model, save_checkpoint
from models.diagnostics import Diagnostics, first_nonfinite
from optim import SGD, Adam, AdamW, ConstantLR, CosineLR, ExponentialLR, InvLR, MultiStepLR, StepLR

log = logging.getLogger("npnet.train")

DATASETS = {"mnist": ((1, 28, 28), "mnist_cnn"), "fashion-mnist": ((1, 28, 28), "mnist_cnn"),
            "cifar10": ((3, 32, 32), "cifar10_bn")}


class TrainingStopped(Exception):
    """Training cannot go on (non-finite loss); the message says where."""


def parse_args(argv=None):
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
    p.add_argument("--augment", choices=["auto", "none", "translate", "crop-flip"], default="auto",
                   help="augmentation (auto: translate for MNIST-like, crop-flip for CIFAR-10)")
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
    args = p.parse_args(argv)
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
        p.error(str(err))
    return args


def parse_schedule(text):
    """'name:arg:arg' -> (name, [floats or lists])."""
    name, *rest = text.split(":")
    arity = {"constant": 0, "cosine": 0, "step": 2, "multistep": 2, "exp": 1, "inv": 2}
    if name not in arity or len(rest) != arity[name]:
        raise ValueError(f"bad --schedule {text!r}; expected one of constant, cosine, step:EPOCHS:GAMMA, "
                         "multistep:E1,E2:GAMMA, exp:GAMMA, inv:GAMMA:POWER")
    try:
        if name == "multistep":
            return name, [[float(v) for v in rest[0].split(",")], float(rest[1])]
        return name, [float(v) for v in rest]
    except ValueError:
        raise ValueError(f"bad --schedule {text!r}: arguments must be numbers") from None


def make_schedule(args, opt, steps_per_epoch, total_steps):
    name, vals = parse_schedule(args.schedule)
    if name == "constant":
        return ConstantLR(opt)
    if name == "cosine":
        return CosineLR(opt, total_steps, warmup_steps=int(args.warmup_epochs * steps_per_epoch))
    if name == "step":
        return StepLR(opt, max(1, int(vals[0] * steps_per_epoch)), vals[1])
    if name == "multistep":
        return MultiStepLR(opt, [int(e * steps_per_epoch) for e in vals[0]], vals[1])
    if name == "exp":
        return ExponentialLR(opt, vals[0] ** (1 / steps_per_epoch))
    return InvLR(opt, vals[0], vals[1])


def make_optimizer(args, model):
    if args.optimizer == "sgd":
        return SGD(model.params, args.lr, momentum=args.momentum, nesterov=args.nesterov,
                   weight_decay=args.weight_decay)
    cls = Adam if args.optimizer == "adam" else AdamW
    return cls(model.params, args.lr, weight_decay=args.weight_decay)


def load_data(args):
    fetch = not args.no_download
    if args.dataset == "cifar10":
        (xtr, ytr), (xte, yte) = data.load_cifar10(args.data_dir, download_missing=fetch)
    else:
        (xtr, ytr), (xte, yte) = data.load_mnist(args.data_dir, name=args.dataset, download_missing=fetch)
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    if args.test_limit:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    return xtr, ytr, xte, yte


def peak_rss_mb():
    """The process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(model, x, y, batch_size=500):
    """Mean loss, accuracy and predictions on (x, y) in eval mode."""
    loss_fn = SoftmaxCrossEntropy()
    logits = model.predict(x, batch_size=batch_size)
    loss = loss_fn.forward(logits, y) if len(y) else float("nan")
    pred = logits.argmax(axis=1)
    return loss, float((pred == y).mean()), pred


def confusion_matrix(y, pred, k):
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def report(y, pred, classes):
    k = len(classes)
    cm = confusion_matrix(y, pred, k)
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    lines = ["per-class accuracy:"]
    lines += [f"  {i} {name:<12} {acc:7.2%}  ({cm[i].sum()} images)" for i, (name, acc) in
              enumerate(zip(classes, per_class))]
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append("      " + "".join(f"{j:>6}" for j in range(k)))
    lines += [f"{i:>6}" + "".join(f"{v:>6}" for v in row) for i, row in enumerate(cm)]
    return "\n".join(lines)


def class_names(dataset):
    if dataset == "cifar10":
        return data.cifar.CLASSES
    return data.mnist.DATASETS[dataset]["classes"]


def augmenter(args):
    kind = args.augment
    if kind == "auto":
        kind = "crop-flip" if args.dataset == "cifar10" else "translate"
    return {"none": None, "translate": data.augment_translate, "crop-flip": data.augment_cifar}[kind]


def epoch_order(data_rng, progress, n):
    """This epoch's permutation of the n training images.

    It is drawn from the data generator's state at the epoch start, which the
    progress record keeps, so a run resumed mid-epoch sees the same order.
    """
    if progress["step_in_epoch"] == 0:
        progress["epoch_rng"] = data_rng.bit_generator.state
        return data_rng.permutation(n)
    current = data_rng.bit_generator.state
    data_rng.bit_generator.state = progress["epoch_rng"]
    order = data_rng.permutation(n)
    data_rng.bit_generator.state = current
    return order


# numpy's overflow warnings are silenced here: the step checks the loss and gradients
# itself and stops with the place where values first went non-finite
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def train_step(model, loss_fn, opt, diagnostics, xb, yb):
    """Forward, loss, backward, update; returns (loss, logits).

    Raises TrainingStopped, naming the first layer with non-finite values, when the
    loss or a gradient stops being finite (nothing is updated then).
    """
    logits = model.forward(xb)
    loss = loss_fn.forward(logits, yb)
    if diagnostics:
        diagnostics.after_forward()
    grads = None
    if math.isfinite(loss):
        _, grads = model.backward(loss_fn.backward())
    if grads is None or not all(np.isfinite(g).all() for g in grads.values()):
        where = first_nonfinite(model, xb, lambda out: (loss_fn.forward(out, yb), loss_fn.backward())[1])
        what = "loss" if grads is None else "gradient"
        raise TrainingStopped(f"non-finite {what}", f"first non-finite values in the {where or 'loss'}")
    if diagnostics:
        diagnostics.before_step()
    opt.step(grads)
    if diagnostics:
        diagnostics.after_step(grads)
    return loss, logits


def train(args):
    input_shape, default_model = DATASETS[args.dataset]
    args.model = args.model or default_model
    xtr, ytr, xte, yte = load_data(args)
    classes = class_names(args.dataset)
    if args.eval_only:
        model = load_model(args.load)
        loss, acc, pred = evaluate(model, xte, yte)
        log.info("test loss %.4f  test accuracy %.2f%%", loss, 100 * acc)
        log.info("%s", report(yte, pred, classes))
        return acc

    if keep_freed_memory():
        log.debug("glibc malloc set to keep freed memory for reuse")
    rng = np.random.default_rng(args.seed)
    model = zoo.build(args.model, input_shape, len(classes), rng=rng)
    model.input_grad = False
    data_rng = np.random.default_rng([args.seed, 1])
    opt = make_optimizer(args, model)
    steps_per_epoch = math.ceil(len(xtr) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    stop_at = min(total_steps, args.max_steps or total_steps)
    sched = make_schedule(args, opt, steps_per_epoch, total_steps)
    gens = [data_rng] + model.generators()
    loss_fn = SoftmaxCrossEntropy(args.label_smoothing)
    augment = augmenter(args)
    diagnostics = Diagnostics(model) if args.diagnostics else None

    progress = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "epoch_rng": None}
    if args.resume:
        progress = load_checkpoint(args.resume, model, opt, sched, gens)
        log.info("resumed from %s at epoch %d, step %d", args.resume, progress["epoch"] + 1,
                 progress["step_in_epoch"])

    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    history = []
    acc = float("nan")
    try:
        for epoch in range(progress["epoch"], args.epochs):
            if progress["global_step"] >= stop_at:
                break
            order = epoch_order(data_rng, progress, len(xtr))
            model.train()
            t0 = time.perf_counter()
            seen = correct = 0
            loss_sum = 0.0
            bar = tqdm(range(progress["step_in_epoch"], steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                       leave=False, disable=args.quiet or None, unit="batch")
            for step in bar:
                if interrupted:
                    break
                idx = order[step * args.batch_size:(step + 1) * args.batch_size]
                xb, yb = xtr[idx], ytr[idx]
                if augment is not None:
                    xb = augment(xb, data_rng)
                try:
                    loss, logits = train_step(model, loss_fn, opt, diagnostics, xb, yb)
                except TrainingStopped as err:
                    what, where = err.args
                    raise TrainingStopped(f"{what} at epoch {epoch + 1}, step {step + 1}: {where}") from None
                sched.step()
                progress["step_in_epoch"] = step + 1
                progress["global_step"] += 1
                seen += len(yb)
                correct += int((logits.argmax(axis=1) == yb).sum())
                loss_sum += loss * len(yb)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                    img_s=f"{seen / (time.perf_counter() - t0):.0f}")
                if progress["global_step"] >= stop_at:
                    break
            bar.close()
            if interrupted:
                if args.save:
                    save_checkpoint(args.save, model, opt, sched, gens, progress,
                                    {"model": args.model, "dataset": args.dataset})
                    log.info("interrupted: checkpoint saved to %s (resume with --resume)", args.save)
                else:
                    log.info("interrupted")
                return acc
            elapsed = time.perf_counter() - t0
            test_loss, acc, pred = evaluate(model, xte, yte)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                      "train_acc": correct / max(seen, 1), "test_loss": test_loss, "test_acc": acc,
                      "lr": opt.lr, "time_s": elapsed, "images_per_s": seen / elapsed,
                      "peak_rss_mb": peak_rss_mb()}
            if diagnostics:
                record["diagnostics"] = diagnostics.summary()
                diagnostics.reset()
            history.append(record)
            log.info("epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  lr %.2e  %.1fs",
                     epoch + 1, args.epochs, record["train_loss"], 100 * record["train_acc"], test_loss,
                     100 * acc, opt.lr, elapsed)
            if diagnostics:
                log.info("%s", Diagnostics.format(record["diagnostics"]))
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            progress.update(epoch=epoch + 1, step_in_epoch=0)
            if args.save:
                save_checkpoint(args.save, model, opt, sched, gens, progress,
                                {"model": args.model, "dataset": args.dataset})
    finally:
        signal.signal(signal.SIGINT, previous)
    loss, acc, pred = evaluate(model, xte, yte)
    log.info("%s", report(yte, pred, classes))
    log.info("test accuracy: %.2f%%", 100 * acc)
    if args.plot:
        write_plots(args, model, history, xte, yte, pred, classes)
    return acc


def write_plots(args, model, history, x, y, pred, classes):
    import plots
    if args.dataset == "cifar10":
        mean, std = data.cifar.MEAN, data.cifar.STD
    else:
        spec = data.mnist.DATASETS[args.dataset]
        mean, std = spec["mean"], spec["std"]
    paths = [plots.confusion(confusion_matrix(y, pred, len(classes)), classes, args.plot),
             plots.misclassified(x, y, pred, classes, mean, std, args.plot)]
    if history:
        paths.append(plots.learning_curves(history, args.plot))
    conv = next((layer for layer in model.modules() if "weight" in layer.params
                 and layer.params["weight"].ndim == 4), None)
    if conv is not None:
        paths.append(plots.filters(conv.params["weight"], args.plot))
    log.info("figures: %s", ", ".join(paths))


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
