"""A convolutional autoencoder on MNIST: two strided convolutions squeeze a digit into a
32 x 7 x 7 code, two transposed convolutions expand it back, and a sigmoid cross-entropy
(BCEWithLogits) scores each reconstructed pixel against the original intensity.

    python examples/autoencoder.py --data-dir ../shared/data

See docs/autoencoder.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.common import fit, mnist_images, trainer  # noqa: E402
from layers import BCEWithLogits, Conv2D, ConvTranspose2D, ReLU  # noqa: E402
from models import Sequential  # noqa: E402


def autoencoder(rng=None):
    """(N, 1, 28, 28) -> code (N, 32, 7, 7) -> (N, 1, 28, 28) pixel logits."""
    rng = np.random.default_rng(rng)
    return Sequential(
        Conv2D(1, 16, 3, stride=2, padding=1, rng=rng), ReLU(),                      # 28 -> 14
        Conv2D(16, 32, 3, stride=2, padding=1, rng=rng), ReLU(),                     # 14 -> 7
        ConvTranspose2D(32, 16, 3, stride=2, padding=1, output_padding=1, rng=rng), ReLU(),  # 7 -> 14
        ConvTranspose2D(16, 1, 3, stride=2, padding=1, output_padding=1, rng=rng),   # 14 -> 28
        input_shape=(1, 28, 28))


def run(data_dir, train_count=512, test_count=256, epochs=8, batch_size=32, seed=0):
    """Train on ``train_count`` images; returns the held-out loss before and after training
    and the training loss of every epoch."""
    x, _ = mnist_images(data_dir, train_count)
    x_test, _ = mnist_images(data_dir, test_count, split="test")
    model = autoencoder(seed)
    run = trainer(model, BCEWithLogits(), seed=seed)
    before = run.evaluate(x_test, x_test).loss
    history = fit(run, x, x, epochs, batch_size)
    return {"test_before": before, "test_after": run.evaluate(x_test, x_test).loss, "train": history,
            "model": model}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("NPNET_DATA"), help="directory holding mnist/")
    p.add_argument("--train", type=int, default=512, help="training images")
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args(argv)
    result = run(args.data_dir, args.train, epochs=args.epochs)
    print("training loss per epoch:", " ".join(f"{v:.4f}" for v in result["train"]))
    print(f"held-out reconstruction loss: {result['test_before']:.4f} before, {result['test_after']:.4f} after")


if __name__ == "__main__":
    main()
