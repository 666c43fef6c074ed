"""Loss functions: ``forward(pred, target)`` returns a float, ``backward()`` d loss / d pred."""
import numpy as np
from scipy.special import expit

from .validation import check_float


def _require_samples(owner, pred):
    """A mean over zero elements is undefined: refuse it with one clear error."""
    if pred.size == 0:
        raise ValueError(f"{owner}: empty batch (pred of shape {pred.shape}): the mean loss over "
                         "no elements is undefined; skip empty batches")


class Loss:
    """Base class: one cache slot, filled by ``forward`` and read by ``backward``."""

    def __init__(self):
        self._cache = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy with integer labels, mean over the batch.

    Fused and log-sum-exp stable: ``-log p_t = log sum exp(z - max z) + (max z - z_t)``.
    The loss is accumulated in float64 from the logits themselves, so any finite
    logits give a finite loss (float16 and float32 logits up to their ``finfo.max``
    exactly; float64 logits whose loss exceeds float64's largest value saturate
    there). With ``label_smoothing`` e the target distribution is
    ``(1 - e) * onehot + e / K``. The gradient, ``(softmax(z) - target_distribution) / N``,
    has the logits' dtype and lies in [-1/N, 1/N]. An empty batch (N = 0) has no mean
    loss and raises a ``ValueError``.

    Shape:
        pred (logits): (N, K)
        target:        (N,) integers in [0, K)
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = check_float("SoftmaxCrossEntropy", "label_smoothing", label_smoothing,
                                           0.0, 1.0, high_open=True)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}

    def forward(self, pred, target):
        if not isinstance(pred, np.ndarray) or pred.ndim != 2 or not np.issubdtype(pred.dtype, np.floating):
            raise ValueError("SoftmaxCrossEntropy: expected floating logits of shape (N, K), got "
                             f"{getattr(pred, 'dtype', '')} {getattr(pred, 'shape', type(pred).__name__)}")
        target = np.asarray(target)
        n, k = pred.shape
        if target.shape != (n,) or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"SoftmaxCrossEntropy: expected integer labels of shape ({n},), "
                             f"got {target.dtype} array of shape {target.shape}")
        _require_samples("SoftmaxCrossEntropy", pred)
        if k == 0 or target.min() < 0 or target.max() >= k:
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in [0, {k}), "
                             f"got values in [{target.min()}, {target.max()}]")
        zmax = pred.max(axis=1, keepdims=True)
        with np.errstate(over="ignore"):  # -inf where z is ~finfo.max below the maximum: exp gives 0
            exp = np.exp(pred - zmax)
        sumexp = exp.sum(axis=1, keepdims=True)  # in [1, K]
        # halves keep max z - z_t finite even for float64 logits of opposite extreme signs
        half_max = zmax[:, 0].astype(np.float64) / 2
        e = self.label_smoothing
        half_gap = (1 - e) * (half_max - pred[np.arange(n), target].astype(np.float64) / 2)
        if e:
            # max >= mean, but near finfo.max the rounded mean can pass the maximum: clamp
            half_gap += e * np.maximum(half_max - (pred.astype(np.float64) / (2 * k)).sum(axis=1), 0)
        half_rows = np.log(sumexp[:, 0].astype(np.float64)) / 2 + half_gap
        with np.errstate(over="ignore"):
            loss = 2 * (half_rows / n).sum()
        exp /= sumexp
        self._cache = (exp, target)
        return min(float(loss), float(np.finfo(np.float64).max))

    def backward(self):
        probs, target = self._saved()
        n, k = probs.shape
        e = self.label_smoothing
        dpred = probs - probs.dtype.type(e / k) if e else probs.copy()
        dpred[np.arange(n), target] -= probs.dtype.type(1 - e)
        dpred /= probs.dtype.type(n)
        return dpred


class MSELoss(Loss):
    """Mean squared error over all elements: ``mean((pred - target)**2)``.

    Shape:
        pred, target: the same shape (no broadcasting)
    """

    def forward(self, pred, target):
        target = np.asarray(target)
        if not isinstance(pred, np.ndarray) or not np.issubdtype(pred.dtype, np.floating):
            raise ValueError(f"MSELoss: expected a floating numpy array as pred, got {type(pred).__name__} "
                             f"{getattr(pred, 'dtype', '')}")
        if pred.shape != target.shape:
            raise ValueError(f"MSELoss: pred and target must have the same shape, got "
                             f"{pred.shape} and {target.shape}")
        _require_samples("MSELoss", pred)
        diff = pred - target.astype(pred.dtype, copy=False)
        self._cache = (diff,)
        return float(np.mean(diff * diff))

    def backward(self):
        (diff,) = self._saved()
        return diff * diff.dtype.type(2.0 / diff.size)


REDUCTIONS = ("mean", "sum")


class _ReducedLoss(Loss):
    """A loss that sums per-element terms and divides by their number (``"mean"``) or not."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def get_config(self):
        return {"reduction": self.reduction}

    def _reduce(self, terms, count):
        """Sum or mean of the per-element terms; a mean over no elements is refused."""
        if self.reduction == "mean":
            _require_samples(type(self).__name__, terms)
            return float(terms.sum() / count)
        return float(terms.sum())

    def _scale(self, grad, count):
        if self.reduction == "mean":
            grad /= grad.dtype.type(count)
        return grad

    def _check_pair(self, pred, target):
        """Floating ``pred`` and a ``target`` of exactly its shape -> target in pred's dtype."""
        name = type(self).__name__
        if not isinstance(pred, np.ndarray) or not np.issubdtype(pred.dtype, np.floating):
            raise ValueError(f"{name}: expected a floating numpy array as pred, got "
                             f"{getattr(pred, 'dtype', type(pred).__name__)}")
        target = np.asarray(target)
        if target.shape != pred.shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got {pred.shape} "
                             f"and {target.shape}")
        if not (np.issubdtype(target.dtype, np.floating) or np.issubdtype(target.dtype, np.integer)
                or target.dtype == bool):
            raise ValueError(f"{name}: target must be numeric, got dtype {target.dtype}")
        return target.astype(pred.dtype, copy=False)


class BCEWithLogits(_ReducedLoss):
    """Sigmoid and binary cross-entropy fused, for multi-label targets (PyTorch's
    ``nn.BCEWithLogitsLoss``): per element
    ``-(pos_weight * y * log sigmoid(z) + (1 - y) * log(1 - sigmoid(z)))``.

    Stable for logits of any magnitude: ``-log sigmoid(z) = softplus(-z)`` and
    ``-log(1 - sigmoid(z)) = softplus(z)``, with ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``.
    The gradient is ``sigmoid(z) * (pos_weight * y + 1 - y) - pos_weight * y`` (over the
    number of elements for ``"mean"``). Targets may be soft, anywhere in [0, 1].

    Shape:
        pred (logits), target: (N, *), the same shape
        pos_weight:            (K,), broadcast along the last axis (K = pred.shape[-1]), or None
    """

    def __init__(self, pos_weight=None, reduction="mean"):
        super().__init__(reduction)
        self.pos_weight = None
        if pos_weight is not None:
            pw = np.array(pos_weight, dtype=np.float64)
            if pw.ndim != 1 or pw.size == 0 or not np.isfinite(pw).all() or (pw < 0).any():
                raise ValueError(f"BCEWithLogits: pos_weight must be a non-empty 1-D sequence of finite "
                                 f"non-negative numbers, got {pos_weight!r}")
            self.pos_weight = pw

    def get_config(self):
        config = super().get_config()
        config["pos_weight"] = None if self.pos_weight is None else self.pos_weight.tolist()
        return config

    def forward(self, pred, target):
        target = self._check_pair(pred, target)
        if not np.isfinite(target).all():
            raise ValueError("BCEWithLogits: targets must be finite numbers in [0, 1], got NaN or inf")
        if pred.size and (target.min() < 0 or target.max() > 1):
            raise ValueError(f"BCEWithLogits: targets must lie in [0, 1], got values in "
                             f"[{target.min()}, {target.max()}]")
        weight = target
        if self.pos_weight is not None:
            if pred.ndim < 1 or pred.shape[-1] != self.pos_weight.size:
                raise ValueError(f"BCEWithLogits: pos_weight has {self.pos_weight.size} entries but pred's "
                                 f"last axis has {pred.shape[-1] if pred.ndim else 0}")
            weight = target * self.pos_weight.astype(pred.dtype)
        softplus_z = np.maximum(pred, 0) + np.log1p(np.exp(-np.abs(pred)))  # -log(1 - sigmoid(z))
        terms = weight * (softplus_z - pred) + (1 - target) * softplus_z
        self._cache = (pred, target, weight)
        return self._reduce(terms, pred.size)

    def backward(self):
        pred, target, weight = self._saved()
        grad = expit(pred).astype(pred.dtype, copy=False) * (weight + 1 - target) - weight
        return self._scale(grad, pred.size)


class NLLLoss(_ReducedLoss):
    """Negative log-likelihood of integer class labels given log-probabilities (PyTorch's
    ``nn.NLLLoss``): ``-pred[n, target[n], ...]`` averaged (``"mean"``) or summed over every
    sample and position. Put :class:`layers.LogSoftmax` (``axis=1``) before it; together they are
    the cross-entropy.

    Shape:
        pred (log-probabilities): (N, K) or (N, K, d1, d2, ...)
        target:                   (N,) or (N, d1, d2, ...), integers in [0, K)
    """

    def forward(self, pred, target):
        if not isinstance(pred, np.ndarray) or pred.ndim < 2 or not np.issubdtype(pred.dtype, np.floating):
            raise ValueError("NLLLoss: expected floating log-probabilities of shape (N, K, *), got "
                             f"{getattr(pred, 'shape', type(pred).__name__)}")
        target = np.asarray(target)
        expected = pred.shape[:1] + pred.shape[2:]
        if target.shape != expected or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"NLLLoss: expected integer labels of shape {expected}, got {target.dtype} "
                             f"array of shape {target.shape}")
        if self.reduction == "mean":
            _require_samples("NLLLoss", pred)
        k = pred.shape[1]
        if target.size and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"NLLLoss: labels must be in [0, {k}), got values in "
                             f"[{target.min()}, {target.max()}]")
        picked = np.take_along_axis(pred, target[:, None], axis=1)
        self._cache = (pred.shape, pred.dtype, target)
        return self._reduce(-picked, target.size)

    def backward(self):
        shape, dtype, target = self._saved()
        grad = np.zeros(shape, dtype)
        np.put_along_axis(grad, target[:, None], dtype.type(-1), axis=1)
        return self._scale(grad, target.size)


class HuberLoss(_ReducedLoss):
    """Quadratic near zero, linear beyond ``delta`` (PyTorch's ``nn.HuberLoss``): per element,
    with ``d = pred - target``, ``0.5 * d**2`` if ``|d| < delta`` else ``delta * (|d| - 0.5 * delta)``.
    The gradient is ``d`` clipped to ``[-delta, delta]``.

    Shape:
        pred, target: (N, *), the same shape
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = check_float("HuberLoss", "delta", delta, low=0.0, low_open=True)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}

    def forward(self, pred, target):
        diff = pred - self._check_pair(pred, target)
        self._cache = (diff,)
        absdiff, delta = np.abs(diff), pred.dtype.type(self.delta)
        terms = np.where(absdiff < delta, 0.5 * diff * diff, delta * (absdiff - 0.5 * delta))
        return self._reduce(terms, diff.size)

    def backward(self):
        (diff,) = self._saved()
        delta = diff.dtype.type(self.delta)
        return self._scale(np.clip(diff, -delta, delta), diff.size)


class SmoothL1Loss(_ReducedLoss):
    """Smooth L1 (PyTorch's ``nn.SmoothL1Loss``): per element, with ``d = pred - target``,
    ``0.5 * d**2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 * beta``; ``beta = 0`` is the L1 loss.
    Equal to ``HuberLoss(delta=beta) / beta``; the gradient is ``clip(d / beta, -1, 1)``.

    Shape:
        pred, target: (N, *), the same shape
    """

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = check_float("SmoothL1Loss", "beta", beta, low=0.0)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}

    def forward(self, pred, target):
        diff = pred - self._check_pair(pred, target)
        self._cache = (diff,)
        absdiff, beta = np.abs(diff), pred.dtype.type(self.beta)
        if self.beta == 0:
            return self._reduce(absdiff, diff.size)
        terms = np.where(absdiff < beta, 0.5 * diff * diff / beta, absdiff - 0.5 * beta)
        return self._reduce(terms, diff.size)

    def backward(self):
        (diff,) = self._saved()
        if self.beta == 0:
            grad = np.sign(diff)
        else:
            grad = np.clip(diff / diff.dtype.type(self.beta), -1, 1)
        return self._scale(grad, diff.size)
