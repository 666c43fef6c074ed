"""Weight initialisation schemes (He/Kaiming and Glorot/Xavier), float32 by default."""
import numpy as np

SCHEMES = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")


def initialize(shape, fan_in, fan_out, scheme, rng, dtype=np.float32):
    """Return a new array of ``shape`` drawn from ``scheme`` using generator ``rng``.

    He:     std = sqrt(2 / fan_in)             (keeps ReLU activations' variance)
    Glorot: std = sqrt(2 / (fan_in + fan_out)) (keeps tanh/linear variance)
    A uniform variant draws from [-a, a] with a = sqrt(3) * std.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {SCHEMES}")
    if scheme.startswith("he"):
        std = np.sqrt(2.0 / fan_in)
    else:
        std = np.sqrt(2.0 / (fan_in + fan_out))
    if scheme.endswith("normal"):
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    else:
        a = np.float32(np.sqrt(3.0) * std)
        w = rng.uniform(-a, a, size=shape).astype(np.float32)
    return w.astype(dtype, copy=False)


def make_rng(rng):
    """Accept a Generator, an integer seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
