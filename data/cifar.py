"""CIFAR-10 from the official binary version; no pickle is ever loaded.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with five training
batches and one test batch of 10,000 records each; a record is one label byte
followed by 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32x32).
"""
import os
import tarfile
import zlib

import numpy as np

from .download import download
from .idx import DataFileError
from .paths import dataset_dir

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_batch(content, source):
    """Records -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    if len(content) == 0 or len(content) % RECORD:
        raise DataFileError(f"{source}: size {len(content)} is not a multiple of the "
                            f"{RECORD}-byte CIFAR-10 record")
    records = np.frombuffer(content, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataFileError(f"{source}: label {labels.max()} out of range [0, 10)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_members(directory, names):
    """Bytes of each batch file, from the extracted folder or straight from the archive."""
    folder = os.path.join(directory, FOLDER)
    if os.path.isdir(folder):
        out = []
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                raise DataFileError(f"{path}: missing CIFAR-10 batch file")
            if not os.path.isfile(path):
                raise DataFileError(f"{path}: not a regular file; expected a CIFAR-10 batch file")
            try:
                with open(path, "rb") as f:
                    out.append((f.read(), path))
            except OSError as err:
                raise DataFileError(f"{path}: cannot read ({err.strerror or err})") from None
        return out
    archive = os.path.join(directory, ARCHIVE)
    if not os.path.isfile(archive):
        raise DataFileError(f"{archive}: not a regular file; expected the CIFAR-10 archive")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            out, missing = [], None
            for name in names:
                member = f"{FOLDER}/{name}"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    missing = member
                    break
                out.append((f.read(), f"{archive}:{member}"))
            # gzip checks its CRC and length only at the end of the stream: read on to it, so
            # that damaged data (which may also end the member list early) is never taken
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataFileError(f"{archive}: corrupted archive ({err}); delete it and download it again") from None
    if missing is not None:
        raise DataFileError(f"{archive}: has no regular file {missing}")
    return out


def _directory(data_dir, download_missing, mirrors):
    """The folder holding the extracted batches or the archive, downloading if absent."""
    directory = dataset_dir("cifar10", data_dir, (ARCHIVE, FOLDER))
    if not os.path.isdir(os.path.join(directory, FOLDER)) and not os.path.exists(os.path.join(directory, ARCHIVE)):
        if not download_missing:
            raise FileNotFoundError(f"cifar10: neither {FOLDER}/ nor {ARCHIVE} found in {directory}")
        download(ARCHIVE, mirrors or MIRRORS, directory, ("md5", ARCHIVE_MD5))
    return directory


def _read_split(directory, names):
    members = _read_members(directory, names)
    parts = [parse_batch(content, source) for content, source in members]
    counts = [len(labels) for _, labels in parts]
    odd = next((i for i, c in enumerate(counts) if c != counts[0]), None)
    if odd is not None:  # the official batches hold 10,000 records each
        raise DataFileError(f"{members[odd][1]}: {counts[odd]} records, {members[0][1]} has {counts[0]}: the "
                            "batches of a CIFAR-10 set are of one size (10,000 records in the official files); "
                            "truncated, or from another set?")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10_raw(data_dir=None, download_missing=True, mirrors=None):
    """((uint8 x_train, y_train), (uint8 x_test, y_test)) with x of shape (N, 3, 32, 32)."""
    directory = _directory(data_dir, download_missing, mirrors)
    return tuple(_read_split(directory, names) for names in (TRAIN_BATCHES, TEST_BATCHES))


def to_float(images):
    """uint8 (N, 3, 32, 32) -> float32, scaled to [0, 1] and standardised per channel."""
    x = images.astype(np.float32) / np.float32(255)
    x -= np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    x /= np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    return x


def load_cifar10(data_dir=None, download_missing=True, mirrors=None):
    """``((x_train, y_train), (x_test, y_test))``: x float32 (N, 3, 32, 32) standardised, y int64."""
    (xtr, ytr), (xte, yte) = load_cifar10_raw(data_dir, download_missing, mirrors)
    return (to_float(xtr), ytr), (to_float(xte), yte)


def load_cifar10_test(data_dir=None, download_missing=True, mirrors=None):
    """The test split only, ``(x_test, y_test)`` as :func:`load_cifar10` gives it; the
    training batches are not read."""
    x, y = _read_split(_directory(data_dir, download_missing, mirrors), TEST_BATCHES)
    return to_float(x), y
