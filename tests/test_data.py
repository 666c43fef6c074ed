"""Readers on files written in the exact official formats, corrupted ones included."""
import gzip
import os
import shutil
import tarfile

import numpy as np
import pytest

import data
from data import batching, cifar, mnist
from data.idx import DataFileError, parse_idx, read_idx
from fixtures import cifar_records, idx_bytes, write_cifar_archive, write_mnist


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_format_round_trip(tmp_path, compress):
    write_mnist(tmp_path / "mnist", compress=compress)
    (xtr, ytr), (xte, yte) = data.load_mnist(tmp_path, download_missing=False)
    assert xtr.shape == (60, 1, 28, 28) and xtr.dtype == np.float32
    assert ytr.dtype == np.int64 and yte.shape == (20,)
    raw, labels = mnist.load_split("mnist", "train", tmp_path, download_missing=False)
    assert raw.dtype == np.uint8 and raw.shape == (60, 28, 28)
    np.testing.assert_array_equal(labels, ytr)
    np.testing.assert_allclose(xtr[:, 0], (raw / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)


def test_data_dir_may_be_the_dataset_folder_or_the_env(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    (a, _), _ = data.load_mnist(tmp_path / "mnist", download_missing=False)
    monkeypatch.setenv("NPNET_DATA", str(tmp_path))
    (b, _), _ = data.load_mnist(download_missing=False)
    np.testing.assert_array_equal(a, b)


def test_idx_other_dtypes():
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr, 0x0C)), arr)
    assert parse_idx(idx_bytes(arr, 0x0C)).dtype.isnative


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:-5], "truncated"),
    (lambda b: b + b"xx", "trailing bytes"),
    (lambda b: b"\x01" + b[1:], "bad magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "type code"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_corrupted_idx_files_name_the_file(tmp_path, mutate, match):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(np.zeros((2, 3, 3), np.uint8))))
    with pytest.raises(DataFileError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_bad_gzip_and_wrong_magic_and_mismatch(tmp_path):
    d = write_mnist(tmp_path / "mnist")
    images = os.path.join(d, "train-images-idx3-ubyte.gz")
    labels = os.path.join(d, "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataFileError, match="wrong magic number 2049, expected 2051"):
        data.idx.read_image_label_pair(labels, labels)
    with open(labels, "wb") as f:
        f.write(gzip.compress(idx_bytes(np.zeros(59, np.uint8))))
    with pytest.raises(DataFileError, match="has 60 images but .* has 59 labels"):
        data.idx.read_image_label_pair(images, labels)
    with open(images, "rb") as f:
        raw = f.read()
    with open(images, "wb") as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(DataFileError, match="corrupted gzip data"):
        read_idx(images)


@pytest.mark.parametrize("content, match", [
    (b"", r"empty file \(0 bytes\)"),
    (gzip.compress(b"", mtime=0), r"gzip file that decompresses to nothing"),
    (gzip.compress(b"\x00\x00", mtime=0), r": 2 bytes of data \(after any gzip decompression\); an IDX file "
                                            r"starts with a 4-byte magic number \(2051 here\)"),
    (b"\x00", r": 1 byte of data .*magic number \(2051 here\)"),
], ids=["empty", "empty-gzip", "short-gzip", "short"])
def test_empty_and_short_idx_files_say_so(tmp_path, content, match):
    d = write_mnist(tmp_path / "mnist")
    images = os.path.join(d, "train-images-idx3-ubyte.gz")
    with open(images, "wb") as f:
        f.write(content)
    with pytest.raises(DataFileError, match=match) as err:
        data.idx.read_image_label_pair(images, os.path.join(d, "train-labels-idx1-ubyte.gz"))
    assert images in str(err.value) and "None" not in str(err.value)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz not found"):
        data.load_mnist(tmp_path, download_missing=False)


def test_cifar_binary_archive_and_folder(tmp_path):
    write_cifar_archive(tmp_path / "cifar10", per_batch=30)
    (xtr, ytr), (xte, yte) = data.load_cifar10(tmp_path, download_missing=False)
    assert xtr.shape == (150, 3, 32, 32) and xte.shape == (30, 3, 32, 32)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    content, labels = cifar_records(30, 0)
    np.testing.assert_array_equal(ytr[:30], labels)
    raw = np.frombuffer(content, np.uint8).reshape(30, -1)[:, 1:].reshape(30, 3, 32, 32)
    expect = (raw / 255 - np.array(cifar.MEAN).reshape(1, 3, 1, 1)) / np.array(cifar.STD).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(xtr[:30], expect, rtol=1e-5, atol=1e-5)
    # the same from the extracted folder
    with tarfile.open(tmp_path / "cifar10" / "cifar-10-binary.tar.gz") as tar:
        tar.extractall(tmp_path / "extracted" / "cifar10", filter="data")
    (x2, y2), _ = data.load_cifar10(tmp_path / "extracted", download_missing=False)
    np.testing.assert_array_equal(x2, xtr)


def test_cifar_corrupted(tmp_path):
    with pytest.raises(DataFileError, match="not a multiple of the 3073-byte"):
        cifar.parse_batch(b"\x00" * 3000, "x.bin")
    bad = bytearray(cifar_records(2, 0)[0])
    bad[0] = 12
    with pytest.raises(DataFileError, match="label 12 out of range"):
        cifar.parse_batch(bytes(bad), "x.bin")
    d = tmp_path / "cifar10"
    d.mkdir()
    (d / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataFileError, match="corrupted archive"):
        data.load_cifar10(tmp_path, download_missing=False)
    folder = d / "cifar-10-batches-bin"
    folder.mkdir()
    with pytest.raises(DataFileError, match="missing CIFAR-10 batch file"):
        data.load_cifar10(tmp_path, download_missing=False)


def test_cifar_archive_with_any_flipped_byte_is_refused_or_loads_the_same_data(tmp_path):
    path = write_cifar_archive(tmp_path / "cifar10", per_batch=10)
    original = open(path, "rb").read()
    good = cifar.load_cifar10_raw(tmp_path, download_missing=False)
    outcomes = set()
    for pos in range(10, len(original), len(original) // 60):  # past the gzip header's name-free fields
        damaged = bytearray(original)
        damaged[pos] ^= 0x10
        open(path, "wb").write(damaged)
        try:
            got = cifar.load_cifar10_raw(tmp_path, download_missing=False)
        except DataFileError as err:
            assert str(err).startswith(f"{path}: corrupted archive"), err
            outcomes.add("refused")
            continue
        for (a, b), (c, d) in zip(got, good):  # a byte the data do not depend on
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
    assert outcomes == {"refused"}


def test_cifar_folder_with_a_short_or_odd_batch_is_refused(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar10", per_batch=20)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cifar10", filter="data")
    os.remove(archive)
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    batch = folder / "data_batch_3.bin"
    content = batch.read_bytes()
    batch.write_bytes(content[:cifar.RECORD * 19])  # cut on a record boundary
    with pytest.raises(DataFileError, match=rf"{batch}: 19 records, {folder / 'data_batch_1.bin'} has 20: the "
                                            r"batches of a CIFAR-10 set are of one size"):
        data.load_cifar10(tmp_path, download_missing=False)
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DataFileError, match=rf"{batch}: not a regular file; expected a CIFAR-10 batch file"):
        data.load_cifar10(tmp_path, download_missing=False)
    shutil.rmtree(folder)
    archive_dir = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    archive_dir.mkdir()
    with pytest.raises(DataFileError, match=rf"{archive_dir}: not a regular file; expected the CIFAR-10 archive"):
        data.load_cifar10(tmp_path, download_missing=False)


def test_minibatches_cover_everything_once(rng):
    x = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    batches = list(data.minibatches(x, y, 4, rng=rng))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    assert [len(b[1]) for b in data.minibatches(x, y, 4, rng=rng, drop_last=True)] == [4, 4]
    a = [b[1] for b in data.minibatches(x, y, 4, rng=np.random.default_rng(5))]
    b = [b[1] for b in data.minibatches(x, y, 4, rng=np.random.default_rng(5))]
    assert all((p == q).all() for p, q in zip(a, b))
    with pytest.raises(ValueError, match="10 inputs but 9 targets"):
        next(data.minibatches(x, y[:9], 4, rng=rng))


def test_random_crop_is_a_shifted_window(rng):
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    out = batching.random_crop(x, np.random.default_rng(3), 2)
    assert out.shape == x.shape and out.dtype == np.float32
    r = np.random.default_rng(3)
    dy, dx = r.integers(0, 5, 6), r.integers(0, 5, 6)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(6):
        np.testing.assert_array_equal(out[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8])


def test_random_flip(rng):
    x = rng.standard_normal((200, 1, 2, 3)).astype(np.float32)
    out = batching.random_flip(x, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)])
    same = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | same).all() and 0.35 < flipped.mean() < 0.65
    assert data.augment_cifar(np.zeros((2, 3, 32, 32), np.float32), rng).shape == (2, 3, 32, 32)


def test_fashion_mnist_uses_its_own_folder_and_statistics(tmp_path):
    write_mnist(tmp_path / "fashion-mnist", seed=3)
    (x, y), _ = data.load_mnist(tmp_path, name="fashion-mnist", download_missing=False)
    raw, _ = mnist.load_split("fashion-mnist", "train", tmp_path, download_missing=False)
    np.testing.assert_allclose(x[:, 0], (raw / 255 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5)
    assert mnist.DATASETS["fashion-mnist"]["classes"][9] == "Ankle boot"
    with pytest.raises(FileNotFoundError):
        data.load_mnist(tmp_path, download_missing=False)  # no mnist/ folder here


def test_a_root_holding_other_data_sets_is_not_taken_for_this_one(tmp_path):
    write_mnist(tmp_path / "mnist")
    with pytest.raises(FileNotFoundError, match=r"fashion-mnist: .* not found in .*fashion-mnist"):
        data.load_mnist(tmp_path, name="fashion-mnist", download_missing=False)
    with pytest.raises(FileNotFoundError, match=r"cifar10: .* found in .*cifar10"):
        data.load_cifar10(tmp_path, download_missing=False)


@pytest.mark.parametrize("rng_arg", [None, 7, np.random.default_rng(7)])
def test_randomness_accepts_none_a_seed_or_a_generator(rng_arg):
    from data import augment_cifar, augment_translate, minibatches, random_crop, random_flip
    x = np.arange(5 * 3 * 6 * 6, dtype=np.float32).reshape(5, 3, 6, 6)
    y = np.arange(5)
    seen = np.concatenate([yb for _, yb in minibatches(x, y, 2, rng=rng_arg)])
    assert sorted(seen) == list(range(5))
    for augment in (lambda v: random_crop(v, rng_arg, 2), lambda v: random_flip(v, rng_arg),
                    lambda v: augment_cifar(v, rng_arg), lambda v: augment_translate(v, rng_arg)):
        assert augment(x).shape == x.shape


def test_an_integer_seed_repeats_the_order():
    from data import minibatches
    x, y = np.zeros((9, 2), np.float32), np.arange(9)
    orders = [[int(v) for _, yb in minibatches(x, y, 4, rng=3) for v in yb] for _ in range(2)]
    assert orders[0] == orders[1] and orders[0] != list(range(9))


@pytest.mark.parametrize("call, match", [
    (lambda: data.minibatches([[1.0]] * 4, np.zeros(4), 2), "minibatches: x must be a numpy array"),
    (lambda: data.augment_translate(np.zeros((4, 28, 28), np.float32), 0),
     r"augment_translate: expected a numpy array of images \(N, C, H, W\), got shape \(4, 28, 28\)"),
    (lambda: data.augment_cifar(np.zeros((4, 3, 8)), 0), r"augment_cifar: expected .* got shape \(4, 3, 8\)"),
    (lambda: data.random_crop(np.zeros((2, 1, 4, 4)), 0, -1), "random_crop: pad must be an integer >= 0"),
    (lambda: data.load_mnist("/nowhere", name="kmnist"), "load_mnist: unknown data set 'kmnist'"),
])
def test_batching_augmentation_and_loader_arguments_are_checked(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        out = call()
        next(iter(out)) if hasattr(out, "__next__") else None
