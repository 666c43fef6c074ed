"""Layers made of layers: named children, prefixed parameter names, nested configs."""
from layers.base import Layer

from .serialization import save_model


class Container(Layer, register=False):
    """A layer whose parameters and buffers are those of its named children.

    Names follow PyTorch's ``state_dict``: ``"<child>.<param>"``, nested as deep
    as the containers are (``"3.0.weight"``).
    """

    def __init__(self):
        self.training = True
        self._cache = None

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
