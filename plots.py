"""PNG figures of a training run (matplotlib, the optional ``plot`` extra).

Each function writes one PNG and returns its path; :class:`Figures` is the callback
that draws them all at the end of ``Trainer.fit``.
"""
import logging
import os

import numpy as np

from models.callbacks import Callback

log = logging.getLogger("npnet.train")

INSTALL_HINT = "plotting needs matplotlib: install the extra with  pip install -e \".[plot]\""


def require_matplotlib():
    """Import matplotlib with a file-only backend, or raise ImportError naming the extra."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return plt


def _save(fig, directory, name):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    require_matplotlib().close(fig)
    return path


def learning_curves(history, directory):
    """Loss and accuracy per epoch, train and test."""
    plt = require_matplotlib()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, directory, "curves.png")


def confusion(cm, classes, directory):
    """The confusion matrix as a heat map with counts."""
    plt = require_matplotlib()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(0.6 * k + 2, 0.6 * k + 1.5))
    im = ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 3 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title="confusion matrix")
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    return _save(fig, directory, "confusion.png")


def _grid(images, titles, directory, name, title, cmap=None):
    plt = require_matplotlib()
    n = len(images)
    cols = min(n, 8)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        if t:
            ax.set_title(t, fontsize=7)
    fig.suptitle(title)
    return _save(fig, directory, name)


def filters(weight, directory):
    """The first convolution's filters; (C_out, C_in, kh, kw) with C_in 1 (grey) or 3 (colour)."""
    w = np.asarray(weight, np.float64)
    if w.shape[1] == 3:
        imgs = [(f.transpose(1, 2, 0) - f.min()) / (np.ptp(f) + 1e-12) for f in w]
        cmap = None
    else:
        imgs = [f.mean(axis=0) for f in w]
        cmap = "gray"
    return _grid(imgs, [str(i) for i in range(len(imgs))], directory, "filters.png",
                 f"first convolution: {w.shape[0]} filters {w.shape[2]}x{w.shape[3]}", cmap)


def misclassified(x, y, pred, classes, mean, std, directory, count=24):
    """Test images the model got wrong, titled 'predicted (true)'; x is standardised NCHW."""
    wrong = np.flatnonzero(pred != y)[:count]
    images, titles = [], []
    for i in wrong:
        img = x[i] * np.asarray(std).reshape(-1, 1, 1) + np.asarray(mean).reshape(-1, 1, 1)
        img = np.clip(img, 0, 1)
        images.append(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        titles.append(f"{classes[pred[i]]} ({classes[y[i]]})")
    if not images:
        images, titles = [np.zeros((2, 2))], ["none wrong"]
    return _grid(images, titles, directory, "misclassified.png", "misclassified: predicted (true)",
                 "gray" if x.shape[1] == 1 else None)


class Figures(Callback):
    """At the end of a fit that was not interrupted, writes into ``directory``: the
    confusion matrix and the misclassified images of ``(x, y)``, the learning curves
    and the first convolution's filters. ``spec`` is the data set's
    :class:`data.specs.DatasetSpec` (class names, mean and std to undo the standardisation)."""

    def __init__(self, directory, x, y, spec):
        self.directory, self.x, self.y, self.spec = directory, x, y, spec

    def on_fit_end(self, trainer):
        if trainer.interrupted or not trainer.strategy.is_root:
            return
        classes, k = self.spec.classes, self.spec.num_classes
        pred = trainer.predict(self.x).argmax(axis=1)
        cm = np.bincount(self.y * k + pred, minlength=k * k).reshape(k, k)
        paths = [confusion(cm, classes, self.directory),
                 misclassified(self.x, self.y, pred, classes, self.spec.mean, self.spec.std, self.directory)]
        if trainer.history:
            paths.append(learning_curves(trainer.history, self.directory))
        conv = next((layer for layer in trainer.model.modules() if "weight" in layer.params
                     and layer.params["weight"].ndim == 4), None)
        if conv is not None:
            paths.append(filters(conv.params["weight"], self.directory))
        log.info("figures: %s", ", ".join(paths))
