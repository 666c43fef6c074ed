"""The Layer contract every npnet op follows.

A layer is a small object with an explicit forward and backward pass:

* ``forward(x)`` returns the output and, in training mode, caches on private
  attributes exactly what ``backward`` needs (one slot, overwritten each call).
  It never mutates ``x``.
* ``backward(dout)`` returns ``(dx, grads)``: the gradient for the last input and
  a dict of parameter gradients with the same keys and shapes as ``params``.
* ``params`` holds the trainable arrays, ``buffers`` the non-trainable state
  (running statistics) that is saved with the model but never trained.
* ``training`` is the per-instance train/eval flag: it switches *behaviour*
  only (Dropout masks, batch or running statistics). Whether ``forward`` keeps
  what ``backward`` needs is a separate switch: it does, in either mode, unless
  it runs inside ``with no_grad():`` (what ``predict`` and evaluation use, so
  that inference keeps nothing), as in PyTorch.
* ``input_grad`` (default True): when a container sets it False on the layer
  that reads the data, a layer with parameters may skip computing ``dx`` and
  return ``None`` in its place, since nothing upstream needs it.
"""
import contextlib
import math
import threading

import numpy as np

LAYER_REGISTRY = {}

_grad_mode = threading.local()


def grad_enabled():
    """False inside :func:`no_grad`: layers then cache nothing for backward."""
    return getattr(_grad_mode, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Run forward passes without keeping anything for backward (inference).

    ``with no_grad(): out = model.forward(x)``; a ``backward`` afterwards raises.
    Nestable; the previous setting returns on exit. Per thread.
    """
    previous = grad_enabled()
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


class Layer:
    """Base class of all layers; subclasses override ``forward``/``backward``.

    Subclasses are registered by class name so that saved models can be rebuilt
    from their JSON description. A subclass that takes constructor arguments
    reports them from ``get_config`` (JSON-serialisable values only).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYER_REGISTRY[cls.__name__] = cls

    input_grad = True

    def __init__(self):
        self.params = {}
        self.buffers = {}
        self.training = True
        self._cache = None

    # -- the contract ------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def __call__(self, x):
        return self.forward(x)

    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return tuple(input_shape)

    def cost(self, input_shape):
        """Per-sample cost for ``input_shape``: forward and backward FLOPs (a multiply-add
        counts 2) and the bytes ``forward`` keeps for ``backward`` in float32.

        The default suits element-wise layers: one operation per output element
        each way, and the output (or a same-sized mask) cached.
        """
        n = math.prod(self.output_shape(input_shape))
        return {"forward_flops": n, "backward_flops": n, "cache_bytes": 4 * n}

    def get_config(self):
        """Constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- modes and dtype ---------------------------------------------------
    def train(self, mode=True):
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def named_children(self):
        """Ordered ``(name, layer)`` pairs of direct sub-layers (containers override)."""
        return []

    def children(self):
        return [layer for _, layer in self.named_children()]

    def astype(self, dtype):
        """Convert parameters and floating buffers to ``dtype`` in place; returns self."""
        # a container's params/buffers are gathered from its children: converted there
        for store in (vars(self).get("params", {}), vars(self).get("buffers", {})):
            for name, value in store.items():
                if np.issubdtype(value.dtype, np.floating):
                    store[name] = value.astype(dtype)
        for child in self.children():
            child.astype(dtype)
        self.clear_cache()
        return self

    def clear_cache(self):
        """Drop what forward cached for backward."""
        self._cache = None
        for child in self.children():
            child.clear_cache()

    def generators(self):
        """Every ``np.random.Generator`` held by this layer or a sub-layer, each once,
        in a stable order (depth first): the state that makes a run repeatable."""
        found, seen = [], set()
        for layer in self.modules():
            for value in vars(layer).values():
                if isinstance(value, np.random.Generator) and id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
        return found

    def named_modules(self, prefix=""):
        """``(name, layer)`` for this layer and every sub-layer, depth first; names as in
        ``params`` ("" for this layer, "3.block.0" deeper), as PyTorch's ``named_modules()``."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """This layer and every sub-layer, depth first."""
        return (layer for _, layer in self.named_modules())

    def num_parameters(self):
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # -- helpers for subclasses --------------------------------------------
    def _save_for_backward(self, *values):
        """Cache values for backward; inside ``no_grad()`` keep nothing (and drop
        any earlier cache)."""
        self._cache = values if grad_enabled() else None

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a preceding forward "
                "(or after a forward inside no_grad(), which keeps nothing)")
        return self._cache

    def _check_input(self, x, trailing=None, ndim=None):
        """Validate a batch: floating dtype, rank ``ndim``, trailing sizes.

        ``trailing`` is a tuple of per-sample sizes, ``None`` entries match any.
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{type(self).__name__}: expected a numpy array, got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{type(self).__name__}: expected a floating-point array, got dtype {x.dtype}")
        if trailing is not None:
            ndim = len(trailing) + 1
        if ndim is not None and x.ndim != ndim:
            want = "(N, " + ", ".join("*" if t is None else str(t) for t in trailing) + ")" \
                if trailing is not None else f"rank {ndim}"
            raise ValueError(f"{type(self).__name__}: expected input of shape {want}, got {x.shape}")
        if trailing is not None:
            for got, want in zip(x.shape[1:], trailing):
                if want is not None and got != want:
                    shape = "(N, " + ", ".join("*" if t is None else str(t) for t in trailing) + ")"
                    raise ValueError(
                        f"{type(self).__name__}: expected input of shape {shape}, got {x.shape}")

    def _check_dout(self, dout, shape):
        if dout.shape != tuple(shape):
            raise ValueError(
                f"{type(self).__name__}.backward: expected upstream gradient of shape "
                f"{tuple(shape)}, got {dout.shape}")
