"""MNIST and Fashion-MNIST: 28x28 grey images in IDX files, 60,000 train / 10,000 test."""
import os

import numpy as np

from .download import download
from .idx import read_image_label_pair
from .paths import dataset_dir

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# SHA-256 of the decompressed files: re-compressed copies of the same data pass too
DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "sha256": {"train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                   "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                   "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                   "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
        "mean": (0.1307,), "std": (0.3081,),
        "classes": tuple(str(d) for d in range(10)),
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "sha256": {"train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                   "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                   "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                   "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        "mean": (0.2860,), "std": (0.3530,),
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot"),
    },
}


def _find(directory, gz_name):
    """The .gz file or its decompressed twin, whichever exists."""
    for candidate in (gz_name, gz_name[:-3]):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    return None


def load_split(name, split, data_dir=None, download_missing=True, mirrors=None):
    """uint8 images (N, 28, 28) and int64 labels (N,) of one split, downloading if absent."""
    if name not in DATASETS:
        raise ValueError(f"load_mnist: unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    if split not in FILES:
        raise ValueError(f"load_split: unknown split {split!r}; expected one of {sorted(FILES)}")
    spec = DATASETS[name]
    markers = [f for pair in FILES.values() for f in pair]
    directory = dataset_dir(name, data_dir, markers + [f[:-3] for f in markers])
    paths = []
    for filename in FILES[split]:
        path = _find(directory, filename)
        if path is None:
            if not download_missing:
                raise FileNotFoundError(f"{name}: {filename} not found in {directory}")
            path = download(filename, mirrors or spec["mirrors"], directory,
                            ("content-sha256", spec["sha256"][filename]))
        paths.append(path)
    return read_image_label_pair(*paths)


def to_float(images, name):
    """uint8 (N, H, W) -> float32 (N, 1, H, W) scaled to [0, 1] and standardised."""
    spec = DATASETS[name]
    x = images.astype(np.float32)[:, None] / np.float32(255)
    x -= np.float32(spec["mean"][0])
    x /= np.float32(spec["std"][0])
    return x


def load_mnist(data_dir=None, name="mnist", download_missing=True, mirrors=None):
    """``((x_train, y_train), (x_test, y_test))``: x float32 (N, 1, 28, 28), standardised; y int64."""
    out = []
    for split in ("train", "test"):
        images, labels = load_split(name, split, data_dir, download_missing, mirrors)
        out.append((to_float(images, name), labels))
    return tuple(out)
