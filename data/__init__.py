"""Data sets, verified downloads and minibatching."""
from .batching import augment_cifar, augment_translate, minibatches, random_crop, random_flip
from .cifar import load_cifar10
from .download import DownloadError, download
from .idx import DataFileError, read_idx
from .mnist import load_mnist
from .specs import DATASETS, DatasetSpec

__all__ = ["load_mnist", "load_cifar10", "read_idx", "download", "DownloadError", "DataFileError",
           "minibatches", "random_crop", "random_flip", "augment_cifar", "augment_translate",
           "DATASETS", "DatasetSpec"]
