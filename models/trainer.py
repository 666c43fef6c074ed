"""The training loop as a library object: ``Trainer(model, loss, optimizer).fit(x, y, ...)``.

The Trainer owns what makes a run exact and safe: the order of the data (drawn from
its generator at each epoch start and recorded, so a run resumed mid-epoch sees the
same order), the progress record that goes into checkpoints, the stop on non-finite
values and the handling of Ctrl-C. Reporting (progress bar, logs, checkpoints every
epoch, diagnostics, figures) plugs in as callbacks (:mod:`models.callbacks`).
"""
import contextlib
import math
import resource
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from layers.base import no_grad
from layers.init import make_rng

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .diagnostics import first_nonfinite
from .strategy import LocalStrategy


class TrainingStopped(Exception):
    """Training cannot go on (a non-finite loss or gradient); the message says where."""


@dataclass(frozen=True)
class Evaluation:
    """What :meth:`Trainer.evaluate` measured over ``count`` samples.

    ``confusion[i, j]`` counts samples of true class ``i`` predicted as ``j``; it and
    ``accuracy`` are None when the targets are not integer class labels.
    """
    loss: float
    accuracy: Optional[float]
    confusion: Optional[np.ndarray]
    count: int

    def per_class_accuracy(self):
        """Accuracy of each true class (0 for a class with no samples)."""
        return self.confusion.diagonal() / np.maximum(self.confusion.sum(axis=1), 1)


class _NoSchedule:
    """Stands in for a missing schedule: the learning rate stays as the optimizer has it."""

    def step(self):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def peak_rss_mb():
    """The process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is_labels(y):
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


class Trainer:
    """Trains ``model`` on in-memory arrays with ``loss`` and ``optimizer``.

    ``schedule`` (optional) is stepped after every update. ``rng`` (a Generator, an
    int seed or None) draws each epoch's order and, unless ``augment_rng`` is given,
    feeds the augmentation; every generator of the model is saved in checkpoints too.
    ``callbacks`` run in the given order (see :mod:`models.callbacks`); ``strategy``
    spreads the work over processes (default :class:`~models.strategy.LocalStrategy`).
    ``evaluate`` reports ``eval_loss`` (default: ``loss``), e.g. without label smoothing.
    ``optimizer`` may be None for a Trainer that only evaluates and predicts.

    Ctrl-C (SIGINT) during :meth:`fit` finishes the current step, runs the callbacks'
    ``on_interrupt`` (a :class:`~models.callbacks.Checkpoint` saves there), then
    ``on_fit_end``, and ``fit`` returns with ``trainer.interrupted`` True; calling
    ``fit`` again continues exactly where it stopped. A second Ctrl-C raises
    KeyboardInterrupt at once. Signals are only caught when ``fit`` runs in the main
    thread.
    """

    def __init__(self, model, loss, optimizer, schedule=None, rng=None, augment_rng=None, callbacks=(),
                 strategy=None, eval_loss=None, eval_batch_size=500):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.schedule = _NoSchedule() if schedule is None else schedule
        self.rng = make_rng(rng)
        self.augment_rng = self.rng if augment_rng is None else make_rng(augment_rng)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callback {cb!r} is not a models.callbacks.Callback")
        self.strategy = LocalStrategy() if strategy is None else strategy
        self.eval_loss = loss if eval_loss is None else eval_loss
        self.eval_batch_size = eval_batch_size
        self.progress = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "epoch_rng": None}
        self.history = []
        self.interrupted = False
        self.epochs = self.batch_size = self.steps_per_epoch = None
        self._signals = []

    # -- state ------------------------------------------------------------
    def generators(self):
        """Every generator the run draws from, each once, in a fixed order."""
        found = []
        for g in [self.rng, self.augment_rng] + self.model.generators():
            if all(g is not f for f in found):
                found.append(g)
        return found

    def save_checkpoint(self, path, info=None):
        """Atomically write the model, optimizer, schedule, generators and progress to
        ``path`` (only on the root rank); ``info`` is a JSON-able dict kept with it."""
        if self.strategy.is_root:
            save_checkpoint(path, self.model, self.optimizer, self.schedule, self.generators(),
                            dict(self.progress), info)

    def resume(self, path):
        """Restore a checkpoint written by :meth:`save_checkpoint`; the next ``fit``
        continues from its position. Returns the progress record."""
        self.progress = load_checkpoint(path, self.model, self.optimizer, self.schedule, self.generators())
        return self.progress

    # -- training -----------------------------------------------------------
    def fit(self, x, y, epochs, batch_size, augment=None, validation=None, max_steps=None):
        """Train until ``epochs`` epochs are complete (counted from the start of training,
        so a resumed run keeps its target) or ``max_steps`` updates in all were taken.

        Each epoch visits the ``len(x)`` samples in a new random order in batches of
        ``batch_size`` (the last one smaller); ``augment(xb, rng)`` transforms each
        batch. ``validation=(x, y)`` is evaluated at every epoch end. Returns
        :attr:`history`, one record per epoch (``epoch``, ``train_loss``, ``train_acc``,
        ``test_loss``, ``test_acc``, ``lr``, ``time_s``, ``images_per_s``,
        ``peak_rss_mb``; the ``test_`` fields with ``validation`` only).
        A stop by ``max_steps`` inside an epoch records the partial epoch but keeps the
        position, so a resumed run finishes that epoch exactly.
        Raises :class:`TrainingStopped` when a loss or gradient is not finite.
        """
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"Trainer.fit: need as many targets as inputs, at least one; got {len(x)} and {len(y)}")
        self.epochs, self.batch_size = epochs, batch_size
        self.steps_per_epoch = math.ceil(len(x) / batch_size)
        stop_at = min(self.steps_per_epoch * epochs, max_steps or math.inf)
        self.interrupted = False
        self.strategy.broadcast_model(self.model)
        with self._catch_signals(), self._no_input_grad():
            self._call("on_fit_start")
            while self.progress["epoch"] < epochs and self.progress["global_step"] < stop_at:
                if not self._run_epoch(x, y, augment, validation, stop_at):
                    self.interrupted = True
                    self._call("on_interrupt")
                    break
        self._call("on_fit_end")
        return self.history

    def _run_epoch(self, x, y, augment, validation, stop_at):
        """One epoch (or its rest after a resume); False when interrupted."""
        epoch, size = self.progress["epoch"], self.batch_size
        order = self._epoch_order(len(x))
        self.model.train()
        self._call("on_epoch_start", epoch)
        labels = _is_labels(y)
        loss_sum = correct = seen = 0
        t0 = time.perf_counter()
        for step in range(self.progress["step_in_epoch"], self.steps_per_epoch):
            if self._signals:
                break
            idx = self.strategy.shard(order[step * size:(step + 1) * size])
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, self.augment_rng)
            loss, out = self._step(xb, yb, epoch, step)
            self.schedule.step()
            self.progress["step_in_epoch"] = step + 1
            self.progress["global_step"] += 1
            seen += len(yb)
            loss_sum += loss * len(yb)
            correct = correct + int((out.argmax(axis=1) == yb).sum()) if labels else None
            self._call("on_step_end", {"epoch": epoch, "step": step, "loss": loss, "seen": seen,
                                       "loss_sum": loss_sum, "correct": correct,
                                       "time_s": time.perf_counter() - t0})
            if self.progress["global_step"] >= stop_at:
                break
        if self._signals:
            return False
        self._end_epoch(epoch, [loss_sum, correct or 0, seen], labels, validation, time.perf_counter() - t0)
        return True

    def _end_epoch(self, epoch, sums, labels, validation, elapsed):
        loss_sum, correct, seen = self.strategy.allreduce_sum(sums)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1)}
        if labels:
            record["train_acc"] = correct / max(seen, 1)
        if validation is not None:
            result = self.evaluate(*validation)
            record.update(test_loss=result.loss, test_acc=result.accuracy)
        record.update(lr=self.optimizer.lr, time_s=elapsed, images_per_s=seen / elapsed,
                      peak_rss_mb=peak_rss_mb())
        if self.progress["step_in_epoch"] == self.steps_per_epoch:
            self.progress.update(epoch=epoch + 1, step_in_epoch=0)
        self.strategy.check_in_sync(self.model)
        self.history.append(record)
        self._call("on_epoch_end", record)

    def _epoch_order(self, n):
        """This epoch's permutation, drawn from the generator's state at the epoch start,
        which the progress record keeps: a run resumed mid-epoch sees the same order."""
        if self.progress["step_in_epoch"] == 0:
            self.progress["epoch_rng"] = self.rng.bit_generator.state
            return self.rng.permutation(n)
        current = self.rng.bit_generator.state
        self.rng.bit_generator.state = self.progress["epoch_rng"]
        order = self.rng.permutation(n)
        self.rng.bit_generator.state = current
        return order

    # overflow warnings are silenced: the step checks values itself and names the place
    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def _step(self, xb, yb, epoch, step):
        """Forward, loss, backward, update; returns (loss, output). Nothing is updated
        when the loss or a gradient is not finite: TrainingStopped names the place."""
        out = self.model.forward(xb)
        loss = self.loss.forward(out, yb)
        grads = None
        if math.isfinite(loss):
            _, grads = self.model.backward(self.loss.backward())
        if grads is None or not all(np.isfinite(g).all() for g in grads.values()):
            what = "loss" if grads is None else "gradient"
            raise TrainingStopped(f"non-finite {what} at epoch {epoch + 1}, step {step + 1}: "
                                  f"first non-finite values in the {self._locate(xb, yb, grads)}")
        grads = self.strategy.reduce_gradients(grads, len(yb))
        self._call("on_before_update", grads)
        self.optimizer.step(grads)
        return loss, out

    def _locate(self, xb, yb, grads):
        where = None
        if hasattr(self.model, "layers"):
            where = first_nonfinite(self.model, xb, lambda out: (self.loss.forward(out, yb), self.loss.backward())[1])
        if where is None and grads is not None:
            where = "gradient of " + next(k for k, g in grads.items() if not np.isfinite(g).all())
        return where or "loss"

    # -- inference ----------------------------------------------------------
    def predict(self, x, batch_size=None):
        """The model's outputs for ``x`` in eval mode, keeping nothing for backward;
        ``(0, *output_shape)`` for 0 rows."""
        if len(x) == 0:
            return np.empty((0, *self.model.output_shape(x.shape[1:])), dtype=x.dtype)
        return self.model.predict(x, batch_size=batch_size or self.eval_batch_size)

    def evaluate(self, x, y, batch_size=None):
        """Mean ``eval_loss``, accuracy and confusion counts over ``(x, y)`` in eval mode.

        Each rank evaluates its shard of the rows and the sums are combined, so every
        rank returns the same :class:`Evaluation`. Loss and accuracy are NaN for 0 rows.
        """
        if len(x) != len(y):
            raise ValueError(f"Trainer.evaluate: {len(x)} inputs but {len(y)} targets")
        idx = self.strategy.shard(np.arange(len(x)))
        xs, ys = x[idx], y[idx]
        out = self.predict(xs, batch_size)
        k = out.shape[1] if _is_labels(y) and out.ndim == 2 else 0
        local = np.zeros(2 + k * k)
        if len(ys):
            with no_grad():
                local[0] = self.eval_loss.forward(out, ys) * len(ys)
            local[1] = len(ys)
            if k:
                local[2:] = np.bincount(ys * k + out.argmax(axis=1), minlength=k * k)
        sums = self.strategy.allreduce_sum(local)
        count = int(sums[1])
        loss = sums[0] / count if count else math.nan
        if not k:
            return Evaluation(float(loss), None, None, count)
        confusion = sums[2:].reshape(k, k).astype(np.int64)
        accuracy = confusion.trace() / count if count else math.nan
        return Evaluation(float(loss), float(accuracy), confusion, count)

    # -- plumbing -----------------------------------------------------------
    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    @contextlib.contextmanager
    def _catch_signals(self):
        """Turn the first SIGINT into a request to stop at the next step boundary."""
        self._signals = []
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._signals:
                raise KeyboardInterrupt
            self._signals.append(signum)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def _no_input_grad(self):
        """The first layer reads data: it need not compute an input gradient during fit."""
        previous = self.model.input_grad
        self.model.input_grad = False
        try:
            yield
        finally:
            self.model.input_grad = previous
