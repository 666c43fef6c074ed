import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)  # examples/ is imported by the tests but is not an installed package


@pytest.fixture(autouse=True)
def _registry_restored():
    """Layer classes a test defines leave the registry when the test ends.

    Modules that define layers are imported first: a class registered by an import
    inside a test would otherwise be dropped while its module stays cached."""
    import examples.custom_layers  # noqa: F401
    import models  # noqa: F401
    from layers.registry import LAYER_REGISTRY
    saved = dict(LAYER_REGISTRY)
    yield
    LAYER_REGISTRY.clear()
    LAYER_REGISTRY.update(saved)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def away_from_kinks(rng, shape):
    """Values with magnitude in [0.1, 1) and random sign: no ReLU zeros, ties are measure-zero."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.fixture
def mnist_dir():
    """The real MNIST files, from $NPNET_DATA (CI points it at ../shared/data).

    Skipped with a reason when absent, unless NPNET_REQUIRE_DATA is set (CI), where
    their absence is a failure.
    """
    root = os.environ.get("NPNET_DATA")
    if root and os.path.exists(os.path.join(root, "mnist", "train-images-idx3-ubyte.gz")):
        return root
    message = "real MNIST not found: set NPNET_DATA to a directory holding mnist/"
    if os.environ.get("NPNET_REQUIRE_DATA"):
        pytest.fail(message)
    pytest.skip(message)


def require(module):
    """Import an optional dependency; skipped when absent, but a failure under CI."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed; .ci/run installs the extras the tests need")
        pytest.skip(f"{module} is not installed")
