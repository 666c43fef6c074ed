"""Containers whose graph branches: the addition and multiplication gates of backprop."""
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
        if self.shortcut is None:
            return dx + dout, grads
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
        self._check_dout(dout, a.shape)
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
