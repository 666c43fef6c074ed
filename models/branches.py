"""Containers whose graph branches: the addition and multiplication gates of backprop, and
concatenation."""
import numpy as np

from layers.base import Layer

from .container import Container
from .serialization import build_layer, layer_spec


class Residual(Container):
    """``out = block(x) + shortcut(x)``, the shortcut being the identity by default.

    An addition node distributes its upstream gradient unchanged to both
    branches, so ``dx = d block / dx (dout) + d shortcut / dx (dout)``.

    Shape:
        x:   (N, *input_shape)
        out: (N, *block.output_shape(input_shape)), which the shortcut must match
    """

    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def named_children(self):
        children = [("block", self.block)]
        if self.shortcut is not None:
            children.append(("shortcut", self.shortcut))
        return children

    def get_config(self):
        return {"block": layer_spec(self.block),
                "shortcut": None if self.shortcut is None else layer_spec(self.shortcut)}

    @classmethod
    def from_config(cls, config):
        shortcut = config.get("shortcut")
        return cls(build_layer(config["block"]), None if shortcut is None else build_layer(shortcut))

    def output_shape(self, input_shape):
        out = tuple(self.block.output_shape(input_shape))
        skip = tuple(input_shape) if self.shortcut is None else tuple(self.shortcut.output_shape(input_shape))
        if out != skip:
            raise ValueError(f"Residual: block gives per-sample shape {out} but the shortcut gives {skip}; "
                             "use a shortcut (e.g. a 1x1 Conv2D) that matches")
        return out

    def forward(self, x):
        out = self.block.forward(x)
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        if out.shape != skip.shape:
            raise ValueError(f"Residual: block output {out.shape} and shortcut output {skip.shape} differ")
        return out + skip

    def backward(self, dout):
        dx, grads = self.block.backward(dout)
        grads = self._prefixed("block", grads)
        if self.shortcut is None:  # the block's dx has the forward's dtype; keep it
            return dx + dout.astype(dx.dtype, copy=False), grads
        dskip, skip_grads = self.shortcut.backward(dout)
        grads.update(self._prefixed("shortcut", skip_grads))
        return dx + dskip, grads

    def cost(self, input_shape):
        total = _sum_costs(self.block.cost(input_shape),
                           self.shortcut.cost(input_shape) if self.shortcut is not None else None)
        n = _prod(self.output_shape(input_shape))
        total["forward_flops"] += n
        total["backward_flops"] += n
        return total


class Multiply(Container):
    """``out = branch_a(x) * branch_b(x)`` element-wise.

    A product node switches gradients: each branch receives the upstream
    gradient times the *other* branch's output. With ``branch_b`` ending in a
    Sigmoid this is a gated unit (e.g. a gated linear unit).

    Shape:
        x:   (N, *input_shape)
        out: (N, *branch_a.output_shape(input_shape)), equal to branch_b's
    """

    def __init__(self, branch_a, branch_b):
        super().__init__()
        self.branch_a, self.branch_b = branch_a, branch_b

    def named_children(self):
        return [("branch_a", self.branch_a), ("branch_b", self.branch_b)]

    def get_config(self):
        return {"branch_a": layer_spec(self.branch_a), "branch_b": layer_spec(self.branch_b)}

    @classmethod
    def from_config(cls, config):
        return cls(build_layer(config["branch_a"]), build_layer(config["branch_b"]))

    def output_shape(self, input_shape):
        a = tuple(self.branch_a.output_shape(input_shape))
        b = tuple(self.branch_b.output_shape(input_shape))
        if a != b:
            raise ValueError(f"Multiply: branch_a gives per-sample shape {a} but branch_b gives {b}")
        return a

    def forward(self, x):
        a = self.branch_a.forward(x)
        b = self.branch_b.forward(x)
        if a.shape != b.shape:
            raise ValueError(f"Multiply: branch outputs {a.shape} and {b.shape} differ")
        self._save_for_backward(a, b)
        return a * b

    def backward(self, dout):
        a, b = self._saved()
        dout = self._check_dout(dout, a.shape, a.dtype)
        dxa, grads_a = self.branch_a.backward(dout * b)
        dxb, grads_b = self.branch_b.backward(dout * a)
        grads = self._prefixed("branch_a", grads_a)
        grads.update(self._prefixed("branch_b", grads_b))
        return dxa + dxb, grads

    def cost(self, input_shape):
        total = _sum_costs(self.branch_a.cost(input_shape), self.branch_b.cost(input_shape))
        n = _prod(self.output_shape(input_shape))
        total["forward_flops"] += n
        total["backward_flops"] += 2 * n
        total["cache_bytes"] += 2 * 4 * n
        return total


def _prod(shape):
    out = 1
    for d in shape:
        out *= int(d)
    return out


def _sum_costs(*costs):
    total = {"forward_flops": 0, "backward_flops": 0, "cache_bytes": 0}
    for c in costs:
        if c is not None:
            for k in total:
                total[k] += c[k]
    return total


class Concat(Container):
    """``out = concatenate([branch(x) for branch in branches], axis)``: parallel branches on
    the same input, joined along ``axis`` (default 1, the channels), as in Inception blocks
    and U-Net skips (an empty ``Sequential()`` branch passes ``x`` itself).

    The input feeds every branch, so its gradient is the sum of the branches' input
    gradients; each branch receives its own slice of ``dout`` along ``axis``.

    Shape:
        x:   (N, *input_shape)
        out: the branches' outputs, equal on every axis but ``axis``, where their sizes add up
    """

    def __init__(self, branches, axis=1):
        super().__init__()
        branches = list(branches)
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        for i, branch in enumerate(branches):
            if not isinstance(branch, Layer):
                raise TypeError(f"Concat: branch {i} is a {type(branch).__name__}, not a Layer")
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concat: axis must be a non-zero integer (axis 0 is the batch), got {axis!r}")
        self.branches, self.axis = branches, axis

    def named_children(self):
        return [(str(i), branch) for i, branch in enumerate(self.branches)]

    def get_config(self):
        return {"branches": [layer_spec(branch) for branch in self.branches], "axis": self.axis}

    @classmethod
    def from_config(cls, config):
        return cls([build_layer(spec) for spec in config["branches"]], axis=config.get("axis", 1))

    def _sample_axis(self, ndim):
        """``axis`` of the batched output -> the axis of a per-sample shape of rank ``ndim``."""
        axis = self.axis if self.axis > 0 else self.axis + ndim + 1
        if not 1 <= axis <= ndim:
            raise ValueError(f"Concat: axis {self.axis} out of range for per-sample rank {ndim}")
        return axis - 1

    def output_shape(self, input_shape):
        shapes = [tuple(branch.output_shape(input_shape)) for branch in self.branches]
        axis = self._sample_axis(len(shapes[0]))
        for i, shape in enumerate(shapes):
            if len(shape) != len(shapes[0]) or shape[:axis] + shape[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
                raise ValueError(f"Concat: branch {i} gives per-sample shape {shape}, which differs from "
                                 f"branch 0's {shapes[0]} on an axis other than {self.axis}")
        return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]

    def forward(self, x):
        outs = [branch.forward(x) for branch in self.branches]
        axis = self._sample_axis(outs[0].ndim - 1) + 1
        for i, out in enumerate(outs):
            if out.ndim != outs[0].ndim or out.shape[:axis] + out.shape[axis + 1:] != \
                    outs[0].shape[:axis] + outs[0].shape[axis + 1:]:
                raise ValueError(f"Concat: branch {i} output {out.shape} and branch 0 output "
                                 f"{outs[0].shape} differ on an axis other than {self.axis}")
        out = np.concatenate(outs, axis=axis)
        self._save_for_backward(tuple(branch_out.shape for branch_out in outs), out.dtype)
        return out

    def backward(self, dout):
        shapes, dtype = self._saved()
        axis = self._sample_axis(len(shapes[0]) - 1) + 1
        sizes = [shape[axis] for shape in shapes]
        expected = shapes[0][:axis] + (sum(sizes),) + shapes[0][axis + 1:]
        dout = self._check_dout(dout, expected, dtype)
        pieces = np.split(dout, np.cumsum(sizes)[:-1], axis=axis)
        dx, grads = None, {}
        for i, (branch, piece) in enumerate(zip(self.branches, pieces)):
            dxi, branch_grads = branch.backward(piece)
            grads.update(self._prefixed(str(i), branch_grads))
            if dxi is not None:
                dx = dxi if dx is None else dx + dxi
        return dx, grads

    def cost(self, input_shape):
        total = _sum_costs(*(branch.cost(input_shape) for branch in self.branches))
        n = _prod(self.output_shape(input_shape))
        total["forward_flops"] += n  # the copy into the joined array
        return total
