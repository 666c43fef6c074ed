"""One table of the data sets npnet knows: everything train.py, the plots and a user
need to know about a data set lives in its entry.

Adding a data set means adding one :class:`DatasetSpec` (with :func:`register`) and
the reader its ``load`` calls.
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Tuple

from . import cifar, mnist

AUGMENTATIONS = ("none", "translate", "crop-flip")


@dataclass(frozen=True)
class DatasetSpec:
    """What is known about a data set before reading it.

    ``load(data_dir, download_missing)`` returns ``((x_train, y_train), (x_test, y_test))``
    with x float32 ``(N, *input_shape)`` standardised by ``mean``/``std`` (per channel)
    and y int64 class indices; ``load_test`` (same arguments) returns ``(x_test, y_test)``
    without reading the training files. ``augment`` is the default augmentation's name (one of
    :data:`AUGMENTATIONS`), ``model`` the default architecture's name in ``models.zoo``.
    """
    name: str
    input_shape: Tuple[int, ...]
    classes: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    model: str
    augment: str
    load: Callable
    load_test: Callable

    @property
    def num_classes(self):
        return len(self.classes)


DATASETS = {}


def register(spec):
    """Add ``spec`` to :data:`DATASETS`; a name already taken is refused."""
    if spec.name in DATASETS:
        raise ValueError(f"data set {spec.name!r} is already registered")
    if spec.augment not in AUGMENTATIONS:
        raise ValueError(f"data set {spec.name!r}: augmentation {spec.augment!r} is not one of {AUGMENTATIONS}")
    DATASETS[spec.name] = spec
    return spec


def get(name):
    """The spec registered under ``name``, or a ValueError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def _load_mnist(name, data_dir=None, download_missing=True):
    return mnist.load_mnist(data_dir, name=name, download_missing=download_missing)


def _load_mnist_test(name, data_dir=None, download_missing=True):
    images, labels = mnist.load_split(name, "test", data_dir, download_missing)
    return mnist.to_float(images, name), labels


for _name in ("mnist", "fashion-mnist"):
    _info = mnist.DATASETS[_name]
    register(DatasetSpec(_name, (1, 28, 28), _info["classes"], _info["mean"], _info["std"], "mnist_cnn",
                         "translate", partial(_load_mnist, _name), partial(_load_mnist_test, _name)))

register(DatasetSpec("cifar10", (3, 32, 32), cifar.CLASSES, cifar.MEAN, cifar.STD, "cifar10_bn", "crop-flip",
                     cifar.load_cifar10, cifar.load_cifar10_test))
