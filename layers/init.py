"""Weight initialisation schemes (He/Kaiming and Glorot/Xavier), float32 by default.

Constructors create their parameters and buffers through this module
(``initialize``, ``zeros``, ``ones``, ``full``) so that a loader can build a
declared architecture under :func:`placeholders` first: every array is then a
read-only zero-strided view that costs no memory, its shape and dtype can be
checked against a file, and nothing large is allocated for an architecture the
file cannot back.
"""
import contextlib
import threading

import numpy as np

SCHEMES = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")

_mode = threading.local()


@contextlib.contextmanager
def placeholders():
    """Within this block (per thread) the functions below return zero-memory
    placeholders (``np.broadcast_to`` views) instead of real arrays."""
    previous = getattr(_mode, "placeholders", False)
    _mode.placeholders = True
    try:
        yield
    finally:
        _mode.placeholders = previous


def _placeholder(shape, value, dtype):
    if getattr(_mode, "placeholders", False):
        return np.broadcast_to(np.array(value, dtype=dtype), shape)
    return None


def full(shape, value, dtype=np.float32):
    """``np.full`` (or a placeholder under :func:`placeholders`)."""
    out = _placeholder(shape, value, dtype)
    return np.full(shape, value, dtype=dtype) if out is None else out


def zeros(shape, dtype=np.float32):
    return full(shape, 0, dtype)


def ones(shape, dtype=np.float32):
    return full(shape, 1, dtype)


def initialize(shape, fan_in, fan_out, scheme, rng, dtype=np.float32):
    """Return a new array of ``shape`` drawn from ``scheme`` using generator ``rng``.

    He:     std = sqrt(2 / fan_in)             (keeps ReLU activations' variance)
    Glorot: std = sqrt(2 / (fan_in + fan_out)) (keeps tanh/linear variance)
    A uniform variant draws from [-a, a] with a = sqrt(3) * std.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {SCHEMES}")
    out = _placeholder(shape, 0, dtype)
    if out is not None:
        return out
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


def make_rng(rng, owner=None, name="rng"):
    """Accept a Generator, an integer seed or None (fresh entropy); errors name ``owner``."""
    if isinstance(rng, np.random.Generator):
        return rng
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as err:  # the same class as numpy's, with the owner named
        raise type(err)(f"{owner + ': ' if owner else ''}{name} must be a numpy Generator, a seed (an integer "
                        f">= 0) or None, got {rng!r} ({err})") from None
