"""Loss functions: ``forward(pred, target)`` returns a float, ``backward()`` d loss / d pred."""
import numpy as np

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
            half_gap += e * (half_max - (pred.astype(np.float64) / (2 * k)).sum(axis=1))
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
