"""Writers for data files in the exact official formats (the tests make their own data)."""
import gzip
import io
import os
import tarfile

import numpy as np


def idx_bytes(array, magic_code=0x08):
    """IDX encoding: 0, 0, type code, ndim, big-endian dims, then the data."""
    header = bytes([0, 0, magic_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(">u1" if magic_code == 0x08 else array.dtype).tobytes()


def write_mnist(directory, n_train=60, n_test=20, seed=0, compress=True):
    """A small MNIST-format data set: images whose class is the row where a bar is drawn."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 50, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            content = idx_bytes(arr)
            if compress:
                with gzip.open(os.path.join(directory, name + ".gz"), "wb") as f:
                    f.write(content)
            else:
                with open(os.path.join(directory, name), "wb") as f:
                    f.write(content)
    return directory


def cifar_records(n, seed):
    """n CIFAR-10 binary records whose classes are learnable: each class has its own colour."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    palette = np.random.default_rng(99).integers(0, 256, (10, 3))
    images = rng.normal(0, 30, (n, 3, 32, 32)) + palette[labels][:, :, None, None]
    images = np.clip(images, 0, 255).astype(np.uint8)
    return np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1).tobytes(), labels


def write_cifar_archive(directory, per_batch=50, seed=0):
    """``cifar-10-binary.tar.gz`` laid out exactly like the official one (smaller batches)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "cifar-10-binary.tar.gz")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    with tarfile.open(path, "w:gz") as tar:
        for k, name in enumerate(names):
            content, _ = cifar_records(per_batch, seed + k)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        meta = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                          "ship", "truck"]).encode()
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return path
