"""A small U-Net on MNIST: find the digit's pixels in a noisy image (per-pixel segmentation
into background and foreground). An encoder halves the resolution twice, a decoder brings it
back, and at each resolution a Concat joins the decoder's features with the encoder's (the
skip connections); LogSoftmax over the channels and NLLLoss score every pixel.

    python examples/unet.py --data-dir ../shared/data

See docs/unet.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.common import fit, mnist_images, trainer  # noqa: E402
from layers import (Conv2D, ConvTranspose2D, GroupNorm, LogSoftmax, MaxPool2D, NLLLoss, ReLU,  # noqa: E402
                    Upsample2D, no_grad)
from models import Concat, Sequential  # noqa: E402

NUM_CLASSES = 2  # 0: background, 1: a pixel of the digit
NOISE_STD = 0.6


def conv_block(cin, cout, rng):
    """3x3 convolution, GroupNorm (4 channels per group), ReLU; keeps the size."""
    return [Conv2D(cin, cout, 3, padding=1, bias=False, rng=rng), GroupNorm(cout // 4, cout), ReLU()]


def unet(width=8, rng=None):
    """(N, 1, 28, 28) -> (N, 2, 28, 28) per-pixel log-probabilities; levels at 28, 14 and 7."""
    rng = np.random.default_rng(rng)
    w = width
    bottom = Sequential(MaxPool2D(2), *conv_block(2 * w, 4 * w, rng),                 # 14 -> 7
                        ConvTranspose2D(4 * w, 2 * w, 2, stride=2, rng=rng))          # 7 -> 14
    middle = Sequential(MaxPool2D(2), *conv_block(w, 2 * w, rng),                     # 28 -> 14
                        Concat([bottom, Sequential()]),                                # skip at 14
                        *conv_block(4 * w, 2 * w, rng),
                        Upsample2D(scale_factor=2, mode="bilinear"),                   # 14 -> 28
                        Conv2D(2 * w, w, 1, rng=rng))
    return Sequential(*conv_block(1, w, rng),
                      Concat([middle, Sequential()]),                                  # skip at 28
                      *conv_block(2 * w, w, rng),
                      Conv2D(w, NUM_CLASSES, 1, rng=rng), LogSoftmax(axis=1),
                      input_shape=(1, 28, 28))


def noisy_segmentation(images, rng, threshold=0.5):
    """Inputs: the images plus Gaussian noise of std ``NOISE_STD``; targets: (N, 28, 28)
    class maps, 1 where the clean intensity exceeds ``threshold``, else 0."""
    noisy = images + rng.standard_normal(images.shape, dtype=np.float32) * np.float32(NOISE_STD)
    return noisy, (images[:, 0] > threshold).astype(np.int64)


def scores(model, x, target):
    """Pixel accuracy and foreground IoU of the model's segmentation, and the IoU of the best
    per-pixel threshold of the noisy input (what a network that sees no neighbours can do)."""
    model.eval()
    with no_grad():
        pred = model.forward(x).argmax(axis=1) > 0
    model.train()
    fg = target > 0
    return {"pixel_accuracy": float((pred == fg).mean()), "foreground_iou": _iou(pred, fg),
            "threshold_iou": max(_iou(x[:, 0] > t, fg) for t in np.linspace(0, 1, 21))}


def _iou(pred, true):
    return float((pred & true).sum() / max((pred | true).sum(), 1))


def run(data_dir, train_count=512, test_count=256, epochs=8, batch_size=32, seed=0):
    """Train on ``train_count`` images; returns per-epoch training losses and held-out scores."""
    rng = np.random.default_rng(seed)
    clean, _ = mnist_images(data_dir, train_count)
    clean_test, _ = mnist_images(data_dir, test_count, split="test")
    (x, target), (x_test, target_test) = noisy_segmentation(clean, rng), noisy_segmentation(clean_test, rng)
    model = unet(rng=seed)
    before = scores(model, x_test, target_test)
    history = fit(trainer(model, NLLLoss(), seed=seed), x, target, epochs, batch_size)
    return {"train": history, "before": before, "after": scores(model, x_test, target_test), "model": model}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("NPNET_DATA"), help="directory holding mnist/")
    p.add_argument("--train", type=int, default=512, help="training images")
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args(argv)
    result = run(args.data_dir, args.train, epochs=args.epochs)
    print("training loss per epoch:", " ".join(f"{v:.4f}" for v in result["train"]))
    for when in ("before", "after"):
        s = result[when]
        print(f"held-out, {when} training: pixel accuracy {s['pixel_accuracy']:.4f}, "
              f"foreground IoU {s['foreground_iou']:.3f}")
    print(f"best per-pixel threshold of the noisy input: foreground IoU {result['after']['threshold_iou']:.3f}")


if __name__ == "__main__":
    main()
