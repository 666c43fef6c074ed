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
import numpy as np

from layers.base import Layer
from layers.init import make_rng
from layers.validation import check_size

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .diagnostics import first_nonfinite
from .evaluation import Evaluation, evaluate, is_labels, predict  # noqa: F401  (Evaluation: re-exported)
from .strategy import LocalStrategy


class TrainingStopped(Exception):
    """Training cannot go on: a loss, gradient, parameter, buffer or optimizer state is
    not finite; the message names the epoch, the step and the layer or tensor."""


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


def _first_nonfinite(arrays):
    """The name of the first array (of a name -> array dict) holding a NaN or inf, or None."""
    for name, value in arrays.items():
        if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
            return name
    return None


class Trainer:
    """Trains ``model`` on in-memory arrays with ``loss`` and ``optimizer``.

    ``schedule`` (optional) is stepped after every update. ``rng`` (a Generator, an
    int seed or None) draws each epoch's order and, unless ``augment_rng`` is given,
    feeds the augmentation; every generator of the model is saved in checkpoints too.
    ``callbacks`` run in the given order (see :mod:`models.callbacks`); ``strategy``
    spreads the work over processes (default :class:`~models.strategy.LocalStrategy`).
    ``evaluate`` reports ``eval_loss`` (default: ``loss``), e.g. without label smoothing.
    ``optimizer`` may be None for a Trainer that only evaluates and predicts.

    Ctrl-C (SIGINT) or SIGTERM during :meth:`fit` finishes the current step, runs the
    callbacks' ``on_interrupt`` (a :class:`~models.callbacks.Checkpoint` saves there),
    then ``on_fit_end``, and ``fit`` returns with ``trainer.interrupted`` True and
    ``trainer.stop_signal`` the signal's number; calling ``fit`` again continues
    exactly where it stopped. A second signal raises KeyboardInterrupt at once. Signals
    are only caught when ``fit`` runs in the main thread.
    """

    def __init__(self, model, loss, optimizer, schedule=None, rng=None, augment_rng=None, callbacks=(),
                 strategy=None, eval_loss=None, eval_batch_size=500):
        for name, value in (("loss", loss), ("eval_loss", eval_loss)):
            if isinstance(value, (Layer, type)) or (value is not None and not (
                    callable(getattr(value, "forward", None)) and callable(getattr(value, "backward", None)))):
                got = f"the class {value.__name__} (pass an instance)" if isinstance(value, type) \
                    else type(value).__name__
                raise TypeError(f"Trainer: {name} must be a loss (forward(pred, target), backward(), e.g. "
                                f"layers.SoftmaxCrossEntropy()), got {got}")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.schedule = _NoSchedule() if schedule is None else schedule
        self.rng = make_rng(rng, "Trainer")
        self.augment_rng = self.rng if augment_rng is None else make_rng(augment_rng, "Trainer", "augment_rng")
        self.callbacks = [] if callbacks is None else list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callback {cb!r} is not a models.callbacks.Callback")
        self.strategy = LocalStrategy() if strategy is None else strategy
        self.eval_loss = loss if eval_loss is None else eval_loss
        self.eval_batch_size = eval_batch_size
        self.progress = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "epoch_rng": None}
        self.history = []
        self.interrupted = False
        self.stop_signal = None
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
        ``path`` (only on the root rank); ``info`` is a JSON-able dict kept with it.
        Non-finite state is never written: ValueError, and the file is left as it was."""
        bad = _first_nonfinite(self._state())
        if bad is not None:
            raise ValueError(f"{path}: not saved: {bad} is not finite (an earlier checkpoint is left as it was)")
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
        ``batch_size`` (the last one smaller, or one larger where it would hold a single
        sample: :meth:`epoch_steps`); ``augment(xb, rng)`` transforms each
        batch. ``validation=(x, y)`` is evaluated at every epoch end. Returns
        :attr:`history`, one record per epoch (``epoch``, ``train_loss``, ``train_acc``,
        ``test_loss``, ``test_acc``, ``lr``, ``time_s``, ``images_per_s``,
        ``peak_rss_mb``; the ``test_`` fields with ``validation`` only).
        A stop by ``max_steps`` inside an epoch records the partial epoch but keeps the
        position, so a resumed run finishes that epoch exactly.
        ``epochs`` and ``batch_size`` are integers >= 1, ``max_steps`` None or an
        integer >= 1; ``x`` and ``y`` are numpy arrays with the same number of rows.
        Raises :class:`TrainingStopped` when a loss or gradient is not finite (nothing
        is updated then) or when the update leaves a non-finite parameter, buffer or
        optimizer state.
        """
        for name, value in (("x", x), ("y", y)):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"Trainer.fit: {name} must be a numpy array, got {type(value).__name__}")
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
            raise ValueError(f"Trainer.fit: need as many targets as inputs, at least one; got x of shape "
                             f"{x.shape} and y of shape {y.shape}")
        epochs = check_size("Trainer.fit", "epochs", epochs)
        batch_size = check_size("Trainer.fit", "batch_size", batch_size)
        if max_steps is not None:
            max_steps = check_size("Trainer.fit", "max_steps", max_steps)
        if augment is not None and not callable(augment):
            raise TypeError(f"Trainer.fit: augment must be a function (xb, rng) -> xb, got {type(augment).__name__}")
        self._check_validation(validation, x, y)
        self._check_loss_and_optimizer()
        self._check_epoch_position(len(x), batch_size)
        self.epochs, self.batch_size = epochs, batch_size
        self.steps_per_epoch = self.epoch_steps(len(x), batch_size)
        # epochs end the run by the epoch count (the size of an epoch may change between
        # a checkpoint taken at an epoch's end and its resume); max_steps by the global step
        stop_at = math.inf if max_steps is None else max_steps
        self.interrupted, self.stop_signal = False, None
        self.strategy.broadcast_model(self.model)
        with self._catch_signals(), self._no_input_grad():
            self._call("on_fit_start")
            while self.progress["epoch"] < epochs and self.progress["global_step"] < stop_at:
                if not self._run_epoch(x, y, augment, validation, stop_at):
                    self.interrupted, self.stop_signal = True, self._stop_requested()
                    self._call("on_interrupt")
                    break
        self._call("on_fit_end")
        return self.history

    def _check_validation(self, validation, x, y):
        if validation is None:
            return
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("Trainer.fit: validation must be a pair (x, y) of numpy arrays, "
                            f"got {type(validation).__name__}")
        vx, vy = validation
        for name, value in (("x", vx), ("y", vy)):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"Trainer.fit: validation {name} must be a numpy array, got {type(value).__name__}")
        if vx.ndim != x.ndim or vy.ndim == 0 or len(vx) != len(vy):
            raise ValueError(f"Trainer.fit: validation x of shape {vx.shape} and y of shape {vy.shape} do not "
                             f"match: as many targets as inputs, inputs of rank {x.ndim} as in training")
        try:  # another image size may suit a fully convolutional model: ask the model
            self.model.output_shape(vx.shape[1:])
        except ValueError as err:
            raise ValueError(f"Trainer.fit: validation inputs of shape {vx.shape} do not fit the model: {err}") from None
        if vy.shape[1:] != y.shape[1:] or is_labels(vy) != is_labels(y):
            raise ValueError(f"Trainer.fit: validation targets ({vy.dtype} {vy.shape}) are not of the training "
                             f"targets' kind ({y.dtype} {y.shape}): class labels for labels, the same trailing "
                             "shape for vectors")

    def _check_loss_and_optimizer(self):
        """Both must be there, and the optimizer must update this model's own arrays: one
        built from another model, or before ``models.load`` or ``astype``, would train nothing."""
        if self.optimizer is None:
            raise ValueError("Trainer.fit: this Trainer has no optimizer (None serves evaluate and predict only)")
        if self.loss is None:
            raise ValueError("Trainer.fit: this Trainer has no loss")
        inner = getattr(self.optimizer, "wrapped_optimizer", self.optimizer)
        if not hasattr(inner, "params"):
            return  # a wrapper of its own kind: it answers for what it updates
        held = {id(p) for p in inner.params}
        missing = [name for name, p in self.model.params.items() if id(p) not in held]
        if missing:
            raise ValueError(f"Trainer.fit: the optimizer does not hold the model's parameter arrays "
                             f"{missing[:3]}{' ...' if len(missing) > 3 else ''} ({len(missing)} of "
                             f"{len(self.model.params)}): it was built for another model, or before "
                             "models.load or model.astype gave this one new arrays; build it from model.params")

    def _check_epoch_position(self, n, batch_size):
        """A run stopped inside an epoch continues only on the epoch it stopped in: the
        same number of samples in batches of the same size."""
        step = self.progress["step_in_epoch"]
        if step == 0:
            return
        size = self.progress.get("epoch_size")
        if size is not None and list(size) != [n, batch_size]:
            raise ValueError(f"Trainer.fit: training stopped at step {step} of an epoch of {size[0]} samples in "
                             f"batches of {size[1]}; finish that epoch with the same data and batch_size "
                             f"(got {n} samples in batches of {batch_size})")
        if step > self.epoch_steps(n, batch_size):  # equal: stopped after the last step, before the epoch's end
            raise ValueError(f"Trainer.fit: training stopped at step {step} of an epoch, but {n} samples in "
                             f"batches of {batch_size} make {self.epoch_steps(n, batch_size)} steps; finish that "
                             "epoch with the data and batch_size it began with")

    @staticmethod
    def epoch_steps(n, batch_size):
        """Updates per epoch for ``n`` samples: ``ceil(n / batch_size)``, except that a
        last batch of a single sample joins the one before it (BatchNorm cannot
        normalise one value per channel), so that batch holds ``batch_size + 1``."""
        steps = -(-n // batch_size)
        return steps - 1 if steps > 1 and n % batch_size == 1 else steps

    def _run_epoch(self, x, y, augment, validation, stop_at):
        """One epoch (or its rest after a resume); False when interrupted."""
        epoch, size = self.progress["epoch"], self.batch_size
        order = self._epoch_order(len(x))
        self.model.train()
        self._call("on_epoch_start", epoch)
        labels = is_labels(y)
        loss_sum = correct = seen = 0
        t0 = time.perf_counter()
        for step in range(self.progress["step_in_epoch"], self.steps_per_epoch):
            if self._stop_requested():
                break
            end = len(x) if step == self.steps_per_epoch - 1 else (step + 1) * size
            xb, yb = self._batch(x, y, order[step * size:end], augment)
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
        if self._stop_requested():
            if self.progress["step_in_epoch"] == 0:
                # stopped before this epoch's first step: put the generator back where the
                # epoch started, so that a resume draws this epoch's order again
                self.rng.bit_generator.state = self.progress["epoch_rng"]
            return False
        self._end_epoch(epoch, [loss_sum, correct or 0, seen], labels, validation, time.perf_counter() - t0)
        return True

    def _stop_requested(self):
        """The signal (SIGINT, SIGTERM) that stops training, 0 for none: received here,
        or (several processes) by any rank before the last step."""
        return self.strategy.stop_requested(self._signals[0] if self._signals else 0)

    def _batch(self, x, y, batch, augment):
        """This rank's part of the global batch ``batch`` (indices), augmented.

        The augmentation is drawn for the whole global batch and sliced, so that the
        generator advances alike on every rank and the images are those one process sees.
        """
        if augment is None:
            idx = self.strategy.shard(batch)
            return x[idx], y[idx]
        xb = augment(x[batch], self.augment_rng)
        if self.strategy.size == 1:
            return xb, y[batch]
        part = self.strategy.shard(np.arange(len(batch)))
        return xb[part], y[batch[part]]

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
            self.progress["epoch_size"] = [n, self.batch_size]
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
        # every rank runs backward, after a non-finite loss too: synchronised BatchNorm layers
        # sum over the ranks in backward, and every rank must take part
        if len(yb) == 0:  # a global batch smaller than the ranks left none here; the gradient
            loss = 0.0    # buffer weighs this rank's zeros by its count, 0
            _, grads = self.model.backward(np.zeros_like(out))
        else:
            loss = self.loss.forward(out, yb)
            _, grads = self.model.backward(self.loss.backward())
        finite = math.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
        # None on every rank when any rank's values were not finite
        reduced = self.strategy.reduce_gradients(grads if finite else None, len(yb))
        if not finite:
            what, grads = ("gradient", grads) if math.isfinite(loss) else ("loss", None)
            raise TrainingStopped(f"non-finite {what} at epoch {epoch + 1}, step {step + 1}: "
                                  f"first non-finite values in the {self._locate(xb, yb, grads)}")
        if reduced is None:
            raise TrainingStopped(f"non-finite loss or gradient at epoch {epoch + 1}, step {step + 1} "
                                  f"in another process (rank {self.strategy.rank} of {self.strategy.size} was finite)")
        grads = reduced
        self._call("on_before_update", grads)
        self.optimizer.step(grads)
        bad = _first_nonfinite(self._state())
        if bad is not None:
            raise TrainingStopped(f"non-finite values at epoch {epoch + 1}, step {step + 1}: {bad} after the "
                                  f"optimizer update (learning rate {self.optimizer.lr:.3g})")
        return loss, out

    def _state(self):
        """Every array a checkpoint holds: parameters, buffers, optimizer state."""
        arrays = {f"parameter {k}": v for k, v in self.model.params.items()}
        arrays.update({f"buffer {k}": v for k, v in self.model.buffers.items()})
        if self.optimizer is not None:
            arrays.update({f"optimizer state {k}": v for k, v in self.optimizer.state_dict().items()
                           if isinstance(v, np.ndarray)})
        return arrays

    def _locate(self, xb, yb, grads):
        where = None
        if hasattr(self.model, "layers") and len(yb):
            try:
                where = first_nonfinite(self.model, xb,
                                        lambda out: (self.loss.forward(out, yb), self.loss.backward())[1])
            except ValueError:  # a layer that cannot run alone here (batch statistics of one image
                pass            # once synchronised BatchNorm fell back to this rank's statistics)
        if where is None and grads is not None:
            where = "gradient of " + next(k for k, g in grads.items() if not np.isfinite(g).all())
        return where or "loss"

    # -- inference ----------------------------------------------------------
    def predict(self, x, batch_size=None):
        """The model's eval-mode outputs for ``x``, keeping nothing for backward;
        ``(0, *output_shape)`` for 0 rows (:func:`models.evaluation.predict`)."""
        return predict(self.model, x, self.eval_batch_size if batch_size is None else batch_size)

    def evaluate(self, x, y, batch_size=None):
        """Mean ``eval_loss``, accuracy and confusion counts over ``(x, y)`` in eval mode,
        as an :class:`~models.evaluation.Evaluation`; each rank evaluates its shard of
        the rows. Loss and accuracy are NaN for 0 rows."""
        return evaluate(self.model, self.eval_loss, x, y, self.strategy,
                        self.eval_batch_size if batch_size is None else batch_size)

    # -- plumbing -----------------------------------------------------------
    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    @contextlib.contextmanager
    def _catch_signals(self):
        """Turn the first SIGINT or SIGTERM into a request to stop at the next step boundary."""
        self._signals = []
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._signals:  # a second signal: stop at once, saying which
                self.interrupted, self.stop_signal = True, signum
                raise KeyboardInterrupt
            self._signals.append(signum)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextlib.contextmanager
    def _no_input_grad(self):
        """The first layer reads data: it need not compute an input gradient during fit."""
        previous = self.model.input_grad
        self.model.input_grad = False
        try:
            yield
        finally:
            self.model.input_grad = previous
