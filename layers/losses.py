"""Loss functions: ``forward(pred, target)`` returns a float, ``backward()`` d loss / d pred."""
import numpy as np


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

    Fused and log-sum-exp stable: ``log p = z - max z - log sum exp(z - max z)``,
    so logits of any magnitude give finite values. With ``label_smoothing`` e the
    target distribution is ``(1 - e) * onehot + e / K``.
    The gradient is ``(softmax(z) - target_distribution) / N``.

    Shape:
        pred (logits): (N, K)
        target:        (N,) integers in [0, K)
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}

    def forward(self, pred, target):
        if not isinstance(pred, np.ndarray) or pred.ndim != 2 or not np.issubdtype(pred.dtype, np.floating):
            raise ValueError("SoftmaxCrossEntropy: expected floating logits of shape (N, K), got "
                             f"{getattr(pred, 'shape', type(pred).__name__)}")
        target = np.asarray(target)
        n, k = pred.shape
        if target.shape != (n,) or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"SoftmaxCrossEntropy: expected integer labels of shape ({n},), "
                             f"got {target.dtype} array of shape {target.shape}")
        if n and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in [0, {k}), "
                             f"got values in [{target.min()}, {target.max()}]")
        shifted = pred - pred.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sumexp = exp.sum(axis=1, keepdims=True)
        logp = shifted - np.log(sumexp)
        rows = np.arange(n)
        e = self.label_smoothing
        loss = -(1 - e) * logp[rows, target].mean()
        if e:
            loss -= e * logp.mean(axis=1).mean()
        exp /= sumexp
        self._cache = (exp, target)
        return float(loss)

    def backward(self):
        probs, target = self._saved()
        n, k = probs.shape
        e = self.label_smoothing
        dpred = probs - probs.dtype.type(e / k) if e else probs.copy()
        dpred[np.arange(n), target] -= probs.dtype.type(1 - e)
        dpred /= n
        return dpred


class MSELoss(Loss):
    """Mean squared error over all elements: ``mean((pred - target)**2)``.

    Shape:
        pred, target: the same shape (no broadcasting)
    """

    def forward(self, pred, target):
        target = np.asarray(target)
        if not isinstance(pred, np.ndarray) or pred.shape != target.shape:
            raise ValueError(f"MSELoss: pred and target must have the same shape, got "
                             f"{getattr(pred, 'shape', None)} and {target.shape}")
        diff = pred - target.astype(pred.dtype, copy=False)
        self._cache = (diff,)
        return float(np.mean(diff * diff))

    def backward(self):
        (diff,) = self._saved()
        return diff * diff.dtype.type(2.0 / diff.size)
