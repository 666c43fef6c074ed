"""A straight chain of layers."""
import warnings

import numpy as np

from layers.base import DtypeWarning, Layer, no_grad
from layers.validation import check_size

from .container import Container
from .serialization import build_layer, layer_spec


class Sequential(Container):
    """Applies its layers in order; backward runs them in reverse.

    ``Sequential(l1, l2, ...)`` or ``Sequential([l1, l2, ...])``. Given
    ``input_shape`` (per sample, no batch axis) the whole chain of shapes is
    checked at construction, so a mismatch is reported before any data flows,
    and ``forward`` refuses a batch of any other per-sample shape (a channels-last
    image batch would otherwise pass a leading Flatten as scrambled pixels).

    A layer computes in its input's dtype, so a float64 batch into a model with
    float32 parameters (the default) computes in float64: slower, with float64
    outputs and gradients. The model warns once (:class:`layers.DtypeWarning`);
    cast the batch with ``x.astype(np.float32)``, or convert the model with
    ``astype(np.float64)`` before building its optimizer.

    ``model[i]`` is a layer; ``model[i:j]`` a Sequential sharing those layers.

    Shape:
        x:   (N, *input_shape)
        out: (N, *output_shape(input_shape))
    """

    def __init__(self, *layers, input_shape=None):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Layer")
        self.layers = list(layers)
        self._dtype_warned = False
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        if self.input_shape is not None:
            self.output_shape(self.input_shape)

    @property
    def input_grad(self):
        return not self.layers or self.layers[0].input_grad

    @input_grad.setter
    def input_grad(self, value):
        """False lets the first layer skip its input gradient (its input is data)."""
        if self.layers:
            self.layers[0].input_grad = bool(value)

    def named_children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(self.layers[i])
        return self.layers[i]

    def get_config(self):
        config = {"layers": [layer_spec(layer) for layer in self.layers]}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls([build_layer(spec) for spec in config["layers"]], input_shape=config.get("input_shape"))

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as err:
                raise ValueError(f"Sequential: layer {i} ({type(layer).__name__}) cannot take "
                                 f"per-sample input {shape}: {err}") from None
        return shape

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Sequential: expected a numpy array of shape (N, ...), got {type(x).__name__}")
        if self.input_shape is not None and x.shape[1:] != self.input_shape:
            self._refuse_input(x)
        if not self._dtype_warned and getattr(x, "dtype", np.dtype(np.float32)).itemsize > 4:
            self._warn_wider_input(x)
        if not self.layers:  # the identity: its backward gives the gradient in x's floating dtype
            dtype = getattr(x, "dtype", None)
            self._input_dtype = dtype if dtype is not None and dtype.kind == "f" else None
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def _refuse_input(self, x):
        expected = "(" + ", ".join(["N", *map(str, self.input_shape)]) + ")"
        hint = ""
        if len(self.input_shape) == 3 and x.shape[1:] == (*self.input_shape[1:], self.input_shape[0]):
            hint = "; images are NCHW: this batch looks channels-last (NHWC), pass x.transpose(0, 3, 1, 2)"
        raise ValueError(f"Sequential: expected input of shape {expected} (input_shape={self.input_shape}), "
                         f"got {tuple(x.shape)}{hint}")

    def _warn_wider_input(self, x):
        dtype = getattr(x, "dtype", None)
        narrower = [p.dtype for p in self.params.values() if dtype is not None and p.dtype.kind == "f"
                    and dtype.kind == "f" and p.dtype.itemsize < dtype.itemsize]
        if narrower:
            self._dtype_warned = True
            warnings.warn(
                f"Sequential: a {dtype} batch into a model with {narrower[0]} parameters computes in "
                f"{dtype} (slower, {dtype} outputs and gradients); pass x.astype(np.{narrower[0]}), or "
                f"call model.astype(np.{dtype}) before building the optimizer. Warned once per model.",
                DtypeWarning, stacklevel=3)

    def backward(self, dout):
        """Returns ``(dx, grads)`` with grads keyed like ``params`` and in its order.

        ``dx`` is None when ``input_grad`` is False and the first layer skips it.
        """
        if not self.layers:
            dtype = self.__dict__.get("_input_dtype")
            return (dout if dtype is None or not isinstance(dout, np.ndarray) else
                    dout.astype(dtype, copy=False)), {}
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            dout, layer_grads = self.layers[i].backward(dout)
            grads[i] = layer_grads
            if dout is None and i:
                raise RuntimeError(f"Sequential: layer {i} returned no input gradient")
        ordered = {}
        for i in range(len(self.layers)):
            ordered.update(self._prefixed(str(i), grads[i]))
        return dout, ordered

    def predict(self, x, batch_size=256):
        """Eval-mode forward in batches under ``no_grad`` (caching nothing); restores the
        previous mode. ``x`` with 0 rows gives ``(0, *output_shape)``."""
        batch_size = check_size("Sequential.predict", "batch_size", batch_size)
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Sequential.predict: expected a numpy array of shape (N, ...), got {type(x).__name__}")
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                if len(x) == 0:
                    return self.forward(x)
                outs = [self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(outs)

    def cost(self, input_shape):
        total = {"forward_flops": 0, "backward_flops": 0, "cache_bytes": 0}
        shape = tuple(input_shape)
        for layer in self.layers:
            for key, value in layer.cost(shape).items():
                total[key] += value
            shape = tuple(layer.output_shape(shape))
        return total

    def summary(self, input_shape=None, batch_size=1, print_fn=None):
        """Table per layer: output shape, parameters, forward and backward FLOPs and the
        bytes kept for backward (for ``batch_size`` samples), with totals.

        Returns the text and prints nothing (``print(model.summary((1, 28, 28)))``);
        ``print_fn`` (e.g. ``logging.info``), when given, is also called with it.
        """
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise ValueError("Sequential.summary: give input_shape (per sample, e.g. (1, 28, 28))")
        rows = [("input", str(shape), "", "", "", "")]
        totals = [0, 0, 0, 0]
        for i, layer in enumerate(self.layers):
            cost = layer.cost(shape)
            shape = tuple(layer.output_shape(shape))
            values = [layer.num_parameters(), batch_size * cost["forward_flops"],
                      batch_size * cost["backward_flops"], batch_size * cost["cache_bytes"]]
            totals = [t + v for t, v in zip(totals, values)]
            rows.append((f"{i}: {type(layer).__name__}", str(shape), f"{values[0]:,}", _si(values[1]),
                         _si(values[2]), _si(values[3], "B")))
        rows.append(("total", "", f"{totals[0]:,}", _si(totals[1]), _si(totals[2]), _si(totals[3], "B")))
        width = max(len(r[0]) for r in rows) + 2
        head = ("layer", "output shape", "params", "fwd FLOPs", "bwd FLOPs", "cached")
        fmt = f"{{:<{width}}}{{:<18}}{{:>12}}{{:>12}}{{:>12}}{{:>12}}"
        lines = [fmt.format(*head)] + [fmt.format(*r) for r in rows]
        lines.append(f"FLOPs and cache for a batch of {batch_size}; parameters: "
                     f"{totals[0] * 4 / 2**20:.2f} MiB as float32")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text


def _si(value, unit=""):
    """1234567 -> '1.23M' (B units in binary steps: '1.18 MiB')."""
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value} B"
    for scale, name in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f}{name}"
    return str(value)
