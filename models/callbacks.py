"""Callbacks: code that runs at fixed points of :meth:`Trainer.fit
<models.trainer.Trainer.fit>`, so the loop itself stays free of reporting.

Hooks, in the order ``fit`` calls them::

    on_fit_start(trainer)
    for each epoch:
        on_epoch_start(trainer, epoch)              # epoch counts from 0
        for each step:
            on_before_update(trainer, grads)        # gradients, averaged over ranks
            on_step_end(trainer, logs)              # after the update and schedule step
        on_epoch_end(trainer, record)               # record: the history entry
    on_interrupt(trainer)                           # Ctrl-C/SIGTERM: instead of on_epoch_end
    on_fit_end(trainer)                             # after the last epoch or an interrupt

Callbacks run in the order given to the Trainer; an ``on_epoch_end`` may add fields
to ``record`` and later callbacks (a log) see them. ``on_fit_end`` is not called when
``fit`` raises (``TrainingStopped`` or any other error). Callbacks that write files or
report act only where ``trainer.strategy.is_root``.
"""
import json
import logging
import os

from tqdm import tqdm

from .archive import check_destination
from .diagnostics import Diagnostics

log = logging.getLogger("npnet.train")


def _write_error(what, path, err):
    """An OSError whose message is one line naming the file and the reason."""
    return OSError(f"cannot {what} {path}: {err.strerror or err}")


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_fit_start(self, trainer):
        pass

    def on_epoch_start(self, trainer, epoch):
        pass

    def on_before_update(self, trainer, grads):
        pass

    def on_step_end(self, trainer, logs):
        pass

    def on_epoch_end(self, trainer, record):
        pass

    def on_interrupt(self, trainer):
        pass

    def on_fit_end(self, trainer):
        pass


class ProgressBar(Callback):
    """A tqdm bar per epoch (running loss, accuracy, images/s) and one log line per epoch,
    on the ``npnet.train`` logger (``logging.basicConfig(level=logging.INFO)`` shows it
    from a script of your own; ``train.py`` sets that up).

    ``disable=None`` hides the bar when the output is not a terminal; ``True`` always.
    """

    def __init__(self, disable=None, every=10):
        self.disable, self.every = disable, every
        self.bar = None

    def on_epoch_start(self, trainer, epoch):
        if trainer.strategy.is_root:
            start = trainer.progress["step_in_epoch"]
            self.bar = tqdm(total=trainer.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{trainer.epochs}",
                            leave=False, disable=self.disable, unit="batch")

    def on_step_end(self, trainer, logs):
        if self.bar is None:
            return
        self.bar.update(1)
        if logs["step"] % self.every == 0:
            seen = logs["seen"]
            postfix = {"loss": f"{logs['loss_sum'] / seen:.4f}"}
            if logs["correct"] is not None:
                postfix["acc"] = f"{logs['correct'] / seen:.3f}"
            postfix["img_s"] = f"{seen / logs['time_s']:.0f}"
            self.bar.set_postfix(postfix)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer, record):
        self._close()
        if not trainer.strategy.is_root:
            return
        parts = [f"epoch {record['epoch']}/{trainer.epochs}", f"train loss {record['train_loss']:.4f}"]
        if "train_acc" in record:
            parts[-1] += f" acc {100 * record['train_acc']:.2f}%"
        if "test_loss" in record:
            parts.append(f"test loss {record['test_loss']:.4f}")
            if record.get("test_acc") is not None:
                parts[-1] += f" acc {100 * record['test_acc']:.2f}%"
        parts += [f"lr {record['lr']:.2e}", f"{record['time_s']:.1f}s"]
        log.info("%s", "  ".join(parts))

    def on_interrupt(self, trainer):
        self._close()


class JsonLog(Callback):
    """Appends each epoch's record to ``path`` as one JSON line; a failed write (a full
    disk) is undone, so the file holds only whole lines, and raises OSError naming it."""

    def __init__(self, path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"JsonLog: path must be a file name, got {type(path).__name__}")
        self.path = path

    def on_fit_start(self, trainer):
        """Check that the log can be appended to before any training (the file is created)."""
        if trainer.strategy.is_root:
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
            except OSError as err:
                raise _write_error("append to the log", self.path, err) from None

    def on_epoch_end(self, trainer, record):
        if not trainer.strategy.is_root:
            return
        line = memoryview((json.dumps(record) + "\n").encode())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                while line:
                    line = line[os.write(fd, line):]
            except OSError as err:
                os.ftruncate(fd, size)
                raise _write_error("append to the log", self.path, err) from None
        finally:
            os.close(fd)


class Checkpoint(Callback):
    """Writes a training checkpoint to ``path`` after every epoch and on an interrupt,
    atomically: the previous checkpoint stays until the new one is complete, and stays
    when the write fails (OSError naming the file, e.g. on a full disk)."""

    def __init__(self, path, info=None, on_interrupt=True):
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"Checkpoint: path must be a file name, got {type(path).__name__}")
        self.path, self.info, self.save_on_interrupt = path, info, on_interrupt

    def _save(self, trainer):
        try:
            trainer.save_checkpoint(self.path, self.info)
        except OSError as err:
            message = err.strerror or str(err)
            if str(self.path) not in message:
                message = f"cannot write the checkpoint {self.path}: {message}"
            raise OSError(message) from None

    def on_fit_start(self, trainer):
        """Check that the checkpoint can be written before any training (nothing is left behind)."""
        if trainer.strategy.is_root:
            check_destination(self.path)

    def on_epoch_end(self, trainer, record):
        self._save(trainer)

    def on_interrupt(self, trainer):
        if self.save_on_interrupt:
            self._save(trainer)


class DiagnosticsLog(Callback):
    """Per epoch: dead ReLU units, gradient norms and update/weight ratios
    (:class:`models.diagnostics.Diagnostics`), added to the record as ``"diagnostics"``
    and logged. Put it before a :class:`JsonLog` so the log line holds them."""

    def __init__(self, model):
        self.diagnostics = Diagnostics(model)
        self._grads = None

    def on_before_update(self, trainer, grads):
        self.diagnostics.after_forward()
        self.diagnostics.before_step()
        self._grads = grads

    def on_step_end(self, trainer, logs):
        self.diagnostics.after_step(self._grads)
        self._grads = None

    def on_epoch_end(self, trainer, record):
        record["diagnostics"] = self.diagnostics.summary()
        self.diagnostics.reset()
        if trainer.strategy.is_root:
            log.info("%s", Diagnostics.format(record["diagnostics"]))

