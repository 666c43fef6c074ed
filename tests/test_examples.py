"""The worked examples of docs/autoencoder.md and docs/unet.md, on a few hundred real MNIST images."""
import numpy as np

from layers import GroupNorm

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


def test_resnet_small_gn_is_batch_independent_and_trains(mnist_dir, tmp_path, rng):
    import models
    import train
    model = models.zoo.build("resnet_small_gn", (1, 28, 28), rng=rng)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    # GroupNorm's statistics are per sample: one image gives the same output alone or in a batch
    np.testing.assert_allclose(model.forward(x[:1]), model.forward(x)[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x), model.forward(x), rtol=1e-5, atol=1e-6)
    acc = train.train(train.parse_args(["--data-dir", mnist_dir, "--model", "resnet_small_gn", "--limit", "128",
                                        "--test-limit", "100", "--batch-size", "8", "--epochs", "1", "--quiet",
                                        "--save", str(tmp_path / "gn.npz")]))
    assert 0.0 <= acc <= 1.0
    from models.checkpoint import load_model
    saved = load_model(tmp_path / "gn.npz")
    assert sum(isinstance(m, GroupNorm) for m in saved.modules()) == 9  # stem, 2 per block, 2 shortcuts
    assert not any(m.buffers for m in saved.modules() if not isinstance(m, models.Container))
