"""The Layer contract every npnet op follows.

A layer is a small object with an explicit forward and backward pass:

* ``forward(x)`` returns the output and caches on private attributes exactly
  what ``backward`` needs (one slot, overwritten each call), in train and eval
  mode alike. It never mutates ``x``.
* ``backward(dout)`` returns ``(dx, grads)``: the gradient for the last input and
  a dict of parameter gradients with the same keys and shapes as ``params``.
* ``params`` holds the trainable arrays, ``buffers`` the non-trainable state
  (running statistics) that is saved with the model but never trained.
* ``training`` is the per-instance train/eval flag: it switches *behaviour*
  only (Dropout masks, batch or running statistics). Whether ``forward`` keeps
  what ``backward`` needs is a separate switch: it does, in either mode, unless
  it runs inside ``with no_grad():`` (what ``predict`` and evaluation use, so
  that inference keeps nothing), as in PyTorch.
* dtypes: a layer computes in its input's dtype: float16, float32 or float64
  in gives the same dtype out, for ``out``, ``dx`` and the parameter gradients
  (parameters are cast to it on the fly). Parameters are float32 by default;
  ``astype`` converts them.
* ``input_grad`` (default True): when a container sets it False on the layer
  that reads the data, a layer with parameters may skip computing ``dx`` and
  return ``None`` in its place, since nothing upstream needs it.
"""
import contextlib
import math
import threading

import numpy as np

from .registry import LAYER_REGISTRY, register_layer  # noqa: F401  (LAYER_REGISTRY re-exported)


class DtypeWarning(UserWarning):
    """A batch wider than the model's parameters (float64 into float32): it computes in
    the batch's dtype, which is slower. Raised once per model."""

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

    Subclasses are registered (see :mod:`layers.registry`) so that saved models
    can be rebuilt from their JSON description; ``class Base(Layer,
    register=False)`` keeps an abstract base out of the registry. A subclass
    that takes constructor arguments reports every one of them from
    ``get_config`` (JSON-serialisable values only), defaulted ones included,
    except those listed in ``init_only``; saving checks that it does.
    """

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(**kwargs)
        if register:
            register_layer(cls)

    input_grad = True
    # Constructor arguments that only set up the initial state (a random generator,
    # an initialisation scheme): get_config need not report them, because their effect
    # is in the saved arrays (a rebuilt Dropout draws from a fresh generator). Every
    # other argument, defaulted or not, must be reported.
    init_only = ()

    def __init__(self):
        self.params = {}
        self.buffers = {}
        self.training = True
        self._cache = None

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

    def train(self, mode=True):
        """Set training mode (``mode=True``) or eval mode on this layer and every
        sub-layer; returns self.

        The mode switches behaviour only: Dropout drops in training mode and is the
        identity in eval mode; BatchNorm normalises with the batch statistics (and
        updates its running statistics) in training mode and with the running
        statistics in eval mode. ``backward`` works after a forward in either mode;
        to keep nothing for backward (inference) run the forward inside
        :func:`no_grad`.
        """
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Eval mode for this layer and every sub-layer (``train(False)``); returns self."""
        return self.train(False)

    def named_children(self):
        """Ordered ``(name, layer)`` pairs of direct sub-layers (containers override)."""
        return []

    def children(self):
        return [layer for _, layer in self.named_children()]

    def astype(self, dtype):
        """Convert parameters and floating buffers to the floating ``dtype``; returns self.

        Arrays already of ``dtype`` are left as they are (the same objects). A
        converted array is a new array: the old one is made read-only, so that an
        optimizer built before the conversion, which still holds it, raises at its
        next step instead of silently updating an array the model no longer uses.
        Build optimizers after ``astype``.
        """
        if dtype is None:  # np.dtype(None) is float64: say so rather than convert
            raise TypeError(f"{type(self).__name__}.astype: expected a floating dtype, got None")
        dtype = np.dtype(dtype)
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise TypeError(f"{type(self).__name__}.astype: expected float16, float32 or float64, got {dtype}")
        dtype = dtype.newbyteorder("=")  # '>f4' is float32 in this machine's byte order
        # a container's params/buffers are gathered from its children: converted there
        for store in (vars(self).get("params", {}), vars(self).get("buffers", {})):
            for name, value in store.items():
                if np.issubdtype(value.dtype, np.floating) and value.dtype != dtype:
                    store[name] = value.astype(dtype)
                    value.flags.writeable = False
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

    def _save_for_backward(self, *values):
        """Cache values for backward; inside ``no_grad()`` keep nothing (and drop
        any earlier cache)."""
        self._cache = values if grad_enabled() else None
        # the dtype backward returns its gradients in: that of the input this forward checked
        self._cache_dtype = self.__dict__.get("_checked_dtype")

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
                    raise ValueError(f"{type(self).__name__}: expected input of shape {shape}, "
                                     f"got {x.shape}{_nhwc_hint(x.shape, trailing)}")
        self._checked_dtype = x.dtype

    def _check_dout(self, dout, shape, dtype=None):
        """Validate an upstream gradient: a floating numpy array of exactly ``shape``.

        Returns it in ``dtype`` (default: the dtype of the input :meth:`_check_input`
        accepted in the forward whose values :meth:`_save_for_backward` kept), converted
        when it has another floating dtype, so that every gradient of a backward pass has
        the forward's precision (as PyTorch's autograd does).
        """
        name = type(self).__name__
        if not isinstance(dout, np.ndarray):
            raise TypeError(f"{name}.backward: expected the upstream gradient as a numpy array of "
                            f"shape {tuple(shape)}, got {type(dout).__name__}")
        if not np.issubdtype(dout.dtype, np.floating):
            raise TypeError(f"{name}.backward: expected a floating-point upstream gradient, "
                            f"got dtype {dout.dtype}")
        if dout.shape != tuple(shape):
            raise ValueError(f"{name}.backward: expected upstream gradient of shape "
                             f"{tuple(shape)}, got {dout.shape}")
        dtype = self.__dict__.get("_cache_dtype") if dtype is None else dtype
        return dout if dtype is None or dout.dtype == dtype else dout.astype(dtype)


def _nhwc_hint(shape, trailing):
    """A hint for an image batch given channels-last: its last axis has the channel count."""
    if len(shape) == 4 and len(trailing) == 3 and trailing[0] is not None and shape[-1] == trailing[0]:
        return ("; images are NCHW (channels first) and this batch looks NHWC: "
                "pass x.transpose(0, 3, 1, 2)")
    return ""
