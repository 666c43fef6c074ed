"""Inference over a whole data set: batched eval-mode prediction and the metrics of
:meth:`Trainer.evaluate <models.trainer.Trainer.evaluate>` (loss, accuracy, confusion counts)."""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from layers.base import no_grad
from layers.validation import check_size


@dataclass(frozen=True)
class Evaluation:
    """What was measured over ``count`` samples.

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


def is_labels(y):
    """True for integer class indices, shape (N,)."""
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def predict(model, x, batch_size=500):
    """``model``'s eval-mode outputs for ``x`` in batches, keeping nothing for backward
    (any layer: a container's own ``predict`` is used when it has one); the previous
    mode is restored. 0 rows give ``(0, *output_shape)``."""
    batch_size = check_size("predict", "batch_size", batch_size)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"predict: x must be a numpy array, got {type(x).__name__}")
    if len(x) == 0:
        return np.empty((0, *model.output_shape(x.shape[1:])), dtype=x.dtype)
    if hasattr(model, "predict"):
        return model.predict(x, batch_size=batch_size)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            outs = [model.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def evaluate(model, loss, x, y, strategy, batch_size=500):
    """Mean ``loss``, accuracy and confusion counts of ``model`` on ``(x, y)``.

    Each rank of ``strategy`` evaluates its shard of the rows and the sums are
    combined, so every rank gets the same :class:`Evaluation`. Loss and accuracy are
    NaN for 0 rows.
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            raise TypeError(f"evaluate: {name} must be a numpy array with a batch axis, got "
                            f"{type(value).__name__}{'' if not isinstance(value, np.ndarray) else ' of shape ()'}")
    if len(x) != len(y):
        raise ValueError(f"evaluate: {len(x)} inputs but {len(y)} targets")
    idx = strategy.shard(np.arange(len(x)))
    xs, ys = x[idx], y[idx]
    out = predict(model, xs, batch_size)
    k = out.shape[1] if is_labels(y) and out.ndim == 2 else 0
    local = np.zeros(2 + k * k)
    if len(ys):
        with no_grad():
            local[0] = loss.forward(out, ys) * len(ys)
        local[1] = len(ys)
        if k:
            local[2:] = np.bincount(ys * k + out.argmax(axis=1), minlength=k * k)
    sums = strategy.allreduce_sum(local)
    count = int(sums[1])
    mean_loss = sums[0] / count if count else math.nan
    if not k:
        return Evaluation(float(mean_loss), None, None, count)
    confusion = sums[2:].reshape(k, k).astype(np.int64)
    accuracy = confusion.trace() / count if count else math.nan
    return Evaluation(float(mean_loss), float(accuracy), confusion, count)
