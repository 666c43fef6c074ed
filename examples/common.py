"""What the worked examples share: a few hundred MNIST images and the library's Trainer."""
import numpy as np

from data.mnist import load_split
from models.trainer import Trainer
from optim import Adam


def mnist_images(data_dir, count, split="train"):
    """The first ``count`` MNIST images of ``split`` as float32 (N, 1, 28, 28) in [0, 1], with
    their labels (never downloads)."""
    images, labels = load_split("mnist", split, data_dir, download_missing=False)
    return images[:count].astype(np.float32)[:, None] / np.float32(255), labels[:count]


def trainer(model, loss, lr=2e-3, seed=0):
    """A Trainer with Adam; ``trainer.evaluate(x, target).loss`` is the held-out loss."""
    return Trainer(model, loss, Adam(model.params, lr), rng=seed)


def fit(trainer, x, target, epochs, batch_size):
    """Train; returns the mean training loss of each epoch."""
    return [record["train_loss"] for record in trainer.fit(x, target, epochs, batch_size)]
