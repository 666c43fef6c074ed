"""Saving and loading models: layer specs, the registry lookup, and checked loading.

A model is saved as its architecture (nested ``{"class", "config"}`` specs, JSON)
plus its parameters and buffers, in one archive (:mod:`models.archive`).

Saving checks that the architecture can be rebuilt: every class is registered,
every ``get_config`` is JSON, reports every constructor argument (defaulted or
not) except those the class lists in ``init_only`` and nothing the constructor
does not take, and the layers rebuilt from the specs have the model's parameter
and buffer names and shapes.

Non-finite parameters or buffers (NaN, inf) are refused both ways: ``save``
does not write them and the loaders reject a file that holds them, naming the
entry (``numpy.load`` still reads such a file's arrays).

Loading changes nothing until everything is checked. ``load`` builds the
declared architecture under :func:`layers.init.placeholders` (no memory for
parameters), checks every saved array's name, shape and dtype against it, and
only then gives the model the archive's arrays. ``load_weights`` checks every
array before it copies any into the existing model.
"""
import inspect
import json
import threading

import numpy as np

from layers.base import Layer
from layers.init import placeholders
from layers.registry import LAYER_REGISTRY, lookup_layer, registry_key

from .archive import META_KEY, check_destination, read_archive, write_archive  # noqa: F401

FORMAT = "npnet-model-1"
MAX_DEPTH = 64  # layers nested inside layers

_depth = threading.local()


class _Nesting:
    """Counts how deep a recursive spec/build is, refusing more than MAX_DEPTH."""

    def __enter__(self):
        _depth.n = getattr(_depth, "n", 0) + 1
        if _depth.n > MAX_DEPTH:
            _depth.n -= 1
            raise _TooDeep(f"layers nested more than {MAX_DEPTH} deep")

    def __exit__(self, *exc):
        _depth.n -= 1


def layer_spec(layer):
    """JSON description of a layer: its registered class name and constructor arguments.

    Raises ValueError, naming the layer, when the description could not rebuild it.
    """
    cls = type(layer)
    key = registry_key(cls)
    if LAYER_REGISTRY.get(key) is None:
        raise ValueError(f"{cls.__qualname__} is not a registered layer class (private or abstract "
                         "classes cannot be saved)")
    with _Nesting():
        config = layer.get_config()
    _check_config(cls, config)
    return {"class": key, "config": config}


def _check_config(cls, config):
    name = cls.__qualname__
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise ValueError(f"{name}.get_config() must return a dict with string keys, got {config!r}")
    try:
        json.dumps(config, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}.get_config() is not JSON-serialisable: {err}") from None
    if getattr(cls.from_config, "__func__", None) is not Layer.from_config.__func__:
        return  # the class rebuilds itself from its own config format
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    accepted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    init_only = cls.init_only
    if isinstance(init_only, str) or not all(isinstance(a, str) for a in init_only):
        raise ValueError(f"{name}.init_only must be a tuple of argument names, got {init_only!r}")
    for arg in init_only:
        if arg not in accepted:
            raise ValueError(f"{name}.init_only names {arg!r}, which the constructor does not take")
    for p in params:
        if p.name in accepted and p.name not in init_only and p.name not in config:
            raise ValueError(f"{name}: constructor argument {p.name!r} is missing from get_config(), "
                             "so a saved model could not rebuild this layer; return it from get_config() "
                             f"(or list it in {name}.init_only if it only sets up the initial state)")
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        unknown = sorted(set(config) - accepted)
        if unknown:
            raise ValueError(f"{name}.get_config() returns {unknown}, which the constructor does not take")


def build_layer(spec):
    """Rebuild a layer from :func:`layer_spec` output (no pickle, no code from the file).

    Every failure is a ValueError naming the chain of classes down to the culprit.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise _BuildError(f"not a layer description: {_short(spec)}")
    unknown = set(spec) - {"class", "config"}
    if unknown:
        raise _BuildError(f"layer description with unexpected keys {sorted(unknown)}")
    name, config = spec["class"], spec.get("config", {})
    try:
        cls = lookup_layer(name)
    except ValueError as err:
        raise _BuildError(str(err)) from None
    if cls is None:
        raise _BuildError(f"unknown layer class {name!r}; import the module that defines it before loading")
    if not isinstance(config, dict):
        raise _BuildError(f"{name}: config is a {type(config).__name__}, expected an object")
    with _Nesting():
        try:
            layer = cls.from_config(config)
        except _TooDeep:
            raise
        except _BuildError as err:
            raise _BuildError(f"{name} > {err}") from None
        except Exception as err:  # any constructor failure on a bad config
            raise _BuildError(f"{name}: {type(err).__name__}: {err}") from None
    if not isinstance(layer, cls):
        raise _BuildError(f"{name}.from_config returned a {type(layer).__name__}")
    return layer


class _BuildError(ValueError):
    """A failure while building from a spec (kept apart to prefix the path once per level)."""


class _TooDeep(_BuildError):
    pass


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def model_arrays(model, prefix=""):
    """The arrays that describe a model's state: params and buffers, prefixed by kind."""
    arrays = {f"{prefix}params/{k}": v for k, v in model.params.items()}
    arrays.update({f"{prefix}buffers/{k}": v for k, v in model.buffers.items()})
    return arrays


def _expected(model, prefix):
    """``archive name -> (store dict, key, current array)`` for every param and buffer,
    walking the layers themselves so that an entry can be replaced in its own dict."""
    out = {}
    for path, layer in model.named_modules():
        for kind in ("params", "buffers"):
            store = vars(layer).get(kind)
            if not isinstance(store, dict):
                continue
            for key, value in store.items():
                full = f"{path}.{key}" if path else key
                out[f"{prefix}{kind}/{full}"] = (store, key, value)
    return out


def check_model_arrays(model, arrays, source, prefix="", converting=True):
    """Check that ``arrays`` hold exactly the model's params and buffers, each of the
    model's shape and a compatible dtype (real floating for floating entries, the
    same kind otherwise; when ``converting`` to the model's dtypes, values that a
    narrower dtype cannot hold are refused), floating entries finite. Raises
    ValueError naming ``source`` and the entry."""
    expected = _expected(model, prefix)
    saved = {k for k in arrays if k.startswith((prefix + "params/", prefix + "buffers/"))}
    missing, unexpected = sorted(set(expected) - saved), sorted(saved - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: arrays do not match the model (missing {missing}, "
                         f"unexpected {unexpected})")
    for name, (_, _, target) in expected.items():
        value = arrays[name]
        if value.shape != target.shape:
            raise ValueError(f"{source}: {name} has shape {value.shape}, the model expects {target.shape}")
        want = "f" if target.dtype.kind == "f" else target.dtype.kind
        if value.dtype.kind != want or (want == "f" and value.dtype.itemsize not in (2, 4, 8)):
            raise ValueError(f"{source}: {name} has dtype {value.dtype}, the model expects {target.dtype}")
        if want == "f" and not np.isfinite(value).all():
            raise ValueError(f"{source}: {name} holds non-finite values (NaN or inf); numpy.load "
                             "still reads the file's arrays")
        if converting and value.dtype.itemsize > target.dtype.itemsize and want == "f":
            with np.errstate(over="ignore"):
                if not np.array_equal(np.isfinite(value), np.isfinite(value.astype(target.dtype))):
                    raise ValueError(f"{source}: {name} holds values outside the range of {target.dtype}")
    return expected


def assign_model_arrays(model, arrays, source, prefix=""):
    """Copy saved arrays into ``model``'s existing arrays after checking all of them
    (:func:`check_model_arrays`); on any mismatch nothing is changed."""
    expected = check_model_arrays(model, arrays, source, prefix)
    for name, (_, _, target) in expected.items():
        target[...] = arrays[name]


def adopt_model_arrays(model, arrays, source, prefix=""):
    """Give a freshly built ``model`` the saved arrays themselves (their dtypes kept)."""
    expected = check_model_arrays(model, arrays, source, prefix, converting=False)
    for name, (store, key, _) in expected.items():
        store[key] = np.require(arrays[name], requirements=["C", "W", "O"])


def rebuild(spec, arrays, source, prefix=""):
    """The model described by ``spec`` holding ``arrays``, allocating nothing before
    the arrays are known to fit it."""
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: the architecture is a {type(spec).__name__}, expected an object")
    try:
        with placeholders():
            model = build_layer(spec)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{source}: cannot rebuild the architecture: {err}") from None
    adopt_model_arrays(model, arrays, source, prefix)
    if _holds_placeholders(model):
        # a constructor kept a placeholder outside params/buffers: now that the file is
        # known to back this architecture, build it for real
        model = build_layer(spec)
        adopt_model_arrays(model, arrays, source, prefix)
    return model


def _holds_placeholders(model):
    for layer in model.modules():
        for value in vars(layer).values():
            values = value.values() if isinstance(value, dict) else (value,)
            if any(isinstance(v, np.ndarray) and not v.flags.writeable and 0 in v.strides for v in values):
                return True
    return False


def check_rebuilds(model, spec):
    """Raise ValueError when ``spec`` (the model's own) would rebuild a different model."""
    with placeholders():
        try:
            copy = build_layer(spec)
        except ValueError as err:
            raise ValueError(f"the saved architecture could not be rebuilt: {err}") from None
    ours, theirs = _expected(model, ""), _expected(copy, "")
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None or a[2].shape != b[2].shape:
            where = name.split("/", 1)[1].rpartition(".")[0]
            modules = dict(copy.named_modules()) | dict(model.named_modules())
            layer = f"{where} ({type(modules[where]).__qualname__})" if where else type(model).__qualname__
            raise ValueError(f"layer {layer} rebuilt from get_config() differs: {name} is "
                             f"{None if b is None else b[2].shape} instead of "
                             f"{None if a is None else a[2].shape}; get_config() misses an argument")


def save_model(model, path):
    """Write the model's architecture (JSON), parameters and buffers to ``path``."""
    spec = layer_spec(model)
    check_rebuilds(model, spec)
    arrays = model_arrays(model)
    for name, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"cannot save {path}: {name} holds non-finite values (NaN or inf), which "
                             "load would refuse")
    write_archive(path, arrays, {"format": FORMAT, "architecture": spec})


def load(path):
    """Rebuild a model saved by :func:`save_model`, without pickle or the building code."""
    arrays, meta = read_archive(path)
    _refuse_checkpoint(path, meta)
    if meta.get("format") != FORMAT or "architecture" not in meta:
        raise ValueError(f"{path}: not an npnet model archive (format {_short(meta.get('format'))})")
    other = sorted(k for k in arrays if not k.startswith(("params/", "buffers/")))
    if other:
        raise ValueError(f"{path}: unexpected entries {other}")
    return rebuild(meta["architecture"], arrays, path)


def load_weights(model, path):
    """Load parameters and buffers saved from a model of the same architecture into
    ``model``'s own arrays (converted to their dtypes); all are checked first."""
    arrays, meta = read_archive(path)
    _refuse_checkpoint(path, meta)
    assign_model_arrays(model, arrays, path)
    return model


def _refuse_checkpoint(path, meta):
    if meta.get("format") == "npnet-checkpoint-1":
        raise ValueError(f"{path}: a training checkpoint, not a saved model: "
                         "models.checkpoint.load_model(path) rebuilds its model, "
                         "Trainer.resume(path) continues its training")
