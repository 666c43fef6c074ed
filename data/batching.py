"""Seeded minibatches and vectorised augmentation."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from layers.init import make_rng
from layers.validation import check_size


def minibatches(x, y, batch_size, rng=None, shuffle=True, drop_last=False):
    """Yield ``(x_batch, y_batch)``; a new permutation from ``rng`` each call when shuffling.

    ``rng`` is a ``np.random.Generator``, an integer seed or None (fresh entropy),
    as everywhere in npnet; pass the same Generator every epoch for a new, repeatable
    order each epoch. The last batch is smaller when ``len(x)`` is not a multiple of ``batch_size``
    unless ``drop_last``.
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            raise TypeError(f"minibatches: {name} must be a numpy array with a batch axis, got {type(value).__name__}")
    if len(x) != len(y):
        raise ValueError(f"minibatches: {len(x)} inputs but {len(y)} targets")
    check_size("minibatches", "batch_size", batch_size)
    n = len(x)
    order = make_rng(rng).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def _check_images(name, x):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name}: expected a numpy array of images (N, C, H, W), got {got}")


def random_crop(x, rng, pad):
    """Pad each image by ``pad`` zeros and cut a random HxW window from it (per image).

    ``rng``: a Generator, an integer seed or None, here and in the functions below.

    Shape: x (N, C, H, W) -> (N, C, H, W)
    """
    _check_images("random_crop", x)
    if not isinstance(pad, (int, np.integer)) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"random_crop: pad must be an integer >= 0, got {pad!r}")
    rng = make_rng(rng)
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # (N, C, 2p+1, 2p+1, H, W): every window, as a read-only view
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    return windows[np.arange(n), :, dy, dx]


def random_flip(x, rng, p=0.5):
    """Mirror each image left-right with probability ``p``. Shape: (N, C, H, W) -> same."""
    _check_images("random_flip", x)
    flip = make_rng(rng).random(len(x)) < p
    return np.where(flip[:, None, None, None], x[..., ::-1], x)


def augment_cifar(x, rng):
    """The standard CIFAR-10 augmentation: 4-pixel padded random crop, then horizontal flip."""
    _check_images("augment_cifar", x)
    rng = make_rng(rng)
    return random_flip(random_crop(x, rng, 4), rng)


def augment_translate(x, rng, max_shift=2):
    """Small random translations (up to ``max_shift`` pixels each way), e.g. for MNIST."""
    _check_images("augment_translate", x)
    return random_crop(x, rng, max_shift)
