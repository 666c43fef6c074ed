"""Containers, named architectures and (de)serialisation."""
from .container import Container, build_layer, layer_spec
from .sequential import Sequential
from .serialization import load, load_weights, save_model

__all__ = ["Container", "Sequential", "build_layer", "layer_spec", "load", "load_weights", "save_model"]
