"""Layers made of layers: named children, prefixed parameter names, nested configs."""
import functools

from layers.base import Layer

from .serialization import save_model


class Container(Layer, register=False):
    """A layer whose parameters and buffers are those of its named children.

    Names follow PyTorch's ``state_dict``: ``"<child>.<param>"``, nested as deep
    as the containers are (``"3.0.weight"``).

    Each layer object may appear only once in the whole tree: a second use would
    overwrite the cache its first use keeps for backward, and list (so update) its
    parameters twice. Every subclass's constructor checks this when it returns.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            init = cls.__init__

            @functools.wraps(init)
            def checked_init(self, *args, **kw):
                init(self, *args, **kw)
                # only the outermost constructor checks: a subclass sets its children after super()
                if type(self).__init__ is checked_init:
                    self._check_distinct_layers()

            cls.__init__ = checked_init

    def __init__(self):
        self.training = True
        self._cache = None

    def _check_distinct_layers(self):
        """Raise ValueError if one layer object sits at two positions of the tree."""
        seen = {id(self): "(the container itself)"}

        def walk(layer, prefix):
            for name, child in layer.named_children():
                path = f"{prefix}.{name}" if prefix else name
                if id(child) in seen:
                    raise ValueError(
                        f"{type(self).__name__}: the same {type(child).__name__} object is at "
                        f"position {seen[id(child)]!r} and at {path!r}; a layer object can be used "
                        "only once (a second use overwrites the cache of the first, so gradients are "
                        "wrong, and its parameters would be updated twice). Sharing weights is not "
                        "supported: build two layers (copy.deepcopy(layer) for the same initial weights)")
                seen[id(child)] = path
                walk(child, path)

        walk(self, "")

    def _gather(self, attr):
        return {f"{name}.{key}": value
                for name, child in self.named_children()
                for key, value in getattr(child, attr).items()}

    @property
    def params(self):
        return self._gather("params")

    @property
    def buffers(self):
        return self._gather("buffers")

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, child in self.named_children():
            lines += [f"  ({name}): " + repr(child).replace("\n", "\n  ")]
        return "\n".join(lines + [")"])

    def parameters(self):
        """Parameter arrays in the stable order of ``params`` (and of backward's grads)."""
        return list(self.params.values())

    def _prefixed(self, name, grads):
        return {f"{name}.{key}": value for key, value in grads.items()}

    def save(self, path):
        """Write weights, buffers and architecture to one ``.npz`` (see models.serialization)."""
        save_model(self, path)
