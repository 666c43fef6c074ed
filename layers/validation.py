"""Checks of constructor arguments: every layer rejects a bad value with a message that
names the layer, the argument and what was expected, instead of coercing it."""
import math
import numbers


def check_size(owner, name, value, minimum=1):
    """An integer ``>= minimum`` (bools and floats such as 2.7 or 2.0 are refused) -> int.

    ``minimum=None`` accepts any integer (an axis, which may be negative).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(owner, name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within the given bounds (open or closed) -> float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        left = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        right = "" if high is None else f"{high}" + (")" if high_open else "]")
        bounds = f" in {left or '(-inf, '}{right or 'inf)'}"
        raise ValueError(f"{owner}: {name} must be a finite number{bounds}, got {value!r}")
    return value
