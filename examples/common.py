"""What the worked examples share: a few hundred MNIST images and a plain training loop."""
import numpy as np

from data.batching import minibatches
from data.mnist import load_split
from layers import no_grad
from optim import Adam


def mnist_images(data_dir, count, split="train", offset=0):
    """``count`` MNIST images as float32 (N, 1, 28, 28) in [0, 1], with their labels (no download)."""
    images, labels = load_split("mnist", split, data_dir, download_missing=False)
    images = images[offset:offset + count]
    return images.astype(np.float32)[:, None] / np.float32(255), labels[offset:offset + count]


def evaluate(model, loss_fn, x, target, batch_size=256):
    """Mean loss over ``x`` in eval mode, keeping nothing for backward."""
    model.eval()
    total = 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            xb, tb = x[start:start + batch_size], target[start:start + batch_size]
            total += loss_fn.forward(model.forward(xb), tb) * len(xb)
    model.train()
    return total / len(x)


def fit(model, loss_fn, x, target, epochs, batch_size=32, lr=2e-3, rng=None):
    """Train with Adam; returns the mean training loss of each epoch."""
    rng = np.random.default_rng(rng)
    opt = Adam(model.params, lr)
    history = []
    for _ in range(epochs):
        losses = []
        for xb, tb in minibatches(x, target, batch_size, rng):
            losses.append(loss_fn.forward(model.forward(xb), tb) * len(xb))
            _, grads = model.backward(loss_fn.backward())
            opt.step(grads)
        history.append(float(np.sum(losses) / len(x)))
    return history
