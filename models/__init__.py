"""Containers, named architectures and (de)serialisation."""
from .container import Container
from .sequential import Sequential
from .branches import Concat, Multiply, Residual
from .serialization import build_layer, check_destination, layer_spec, load, load_weights, save_model
from . import zoo  # noqa: E402  (builders need the containers above)

__all__ = ["Container", "Sequential", "Residual", "Multiply", "Concat", "zoo", "build_layer", "layer_spec", "load",
           "load_weights", "save_model", "check_destination"]
