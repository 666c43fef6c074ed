"""The worked examples of docs/autoencoder.md and docs/unet.md, on a few hundred real MNIST images."""
import numpy as np

from examples import autoencoder, unet


def test_autoencoder_reconstruction_loss_goes_down(mnist_dir):
    result = autoencoder.run(mnist_dir, train_count=256, test_count=128, epochs=5, batch_size=16)
    train = result["train"]
    assert all(b < a for a, b in zip(train, train[1:])), train
    # BCE of an untrained network is ~log 2; a working autoencoder more than halves it on unseen digits
    assert result["test_after"] < 0.5 * result["test_before"], result
    assert result["model"].output_shape((1, 28, 28)) == (1, 28, 28)


def test_unet_segments_better_than_a_pixel_threshold(mnist_dir):
    result = unet.run(mnist_dir, train_count=256, test_count=128, epochs=4)
    train = result["train"]
    assert train[-1] < 0.6 * train[0], train
    after = result["after"]
    # the skips and the coarse levels let it use neighbours: well beyond any per-pixel threshold
    assert after["foreground_iou"] > after["threshold_iou"] + 0.1, after
    assert after["pixel_accuracy"] > 0.9, after
    out = result["model"].predict(np.zeros((2, 1, 28, 28), np.float32))
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1, rtol=1e-5)
