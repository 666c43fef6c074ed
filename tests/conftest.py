import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def away_from_kinks(rng, shape):
    """Values with magnitude in [0.1, 1) and random sign: no ReLU zeros, ties are measure-zero."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
