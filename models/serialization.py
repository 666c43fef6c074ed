"""Saving models and training state to ``.npz`` archives, never with pickle.

An archive holds named arrays plus one JSON document (stored as a unicode array
under ``__meta__``); it is written to a temporary file in the same directory
and renamed into place, so a crash never leaves a half-written file, and it is
read with ``allow_pickle=False``.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from .container import build_layer, layer_spec

META_KEY = "__meta__"
FORMAT = "npnet-model-1"


def write_archive(path, arrays, meta):
    """Atomically write ``arrays`` (name -> ndarray) and JSON-able ``meta`` to ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_archive(path):
    """Read an archive written by :func:`write_archive` -> ``(arrays, meta)``."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: not an npnet archive ({err})") from None
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not an npnet archive (no {META_KEY} entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt metadata ({err})") from None
    return arrays, meta


def model_arrays(model, prefix=""):
    """The arrays that describe a model's state: params and buffers, prefixed by kind."""
    arrays = {f"{prefix}params/{k}": v for k, v in model.params.items()}
    arrays.update({f"{prefix}buffers/{k}": v for k, v in model.buffers.items()})
    return arrays


def assign_model_arrays(model, arrays, source, prefix=""):
    """Copy saved arrays into ``model`` after checking that every one is present,
    expected and of the right shape; on any mismatch nothing is changed."""
    targets = {f"{prefix}params/{k}": v for k, v in model.params.items()}
    targets.update({f"{prefix}buffers/{k}": v for k, v in model.buffers.items()})
    saved = {k: v for k, v in arrays.items() if k.startswith(prefix + "params/") or
             k.startswith(prefix + "buffers/")}
    missing = sorted(set(targets) - set(saved))
    unexpected = sorted(set(saved) - set(targets))
    if missing or unexpected:
        raise ValueError(f"{source}: arrays do not match the model (missing {missing}, "
                         f"unexpected {unexpected})")
    for name, target in targets.items():
        if saved[name].shape != target.shape:
            raise ValueError(f"{source}: {name} has shape {saved[name].shape}, "
                             f"the model expects {target.shape}")
    for name, target in targets.items():
        target[...] = saved[name]


def save_model(model, path):
    """Write the model's architecture (JSON), parameters and buffers to ``path``."""
    write_archive(path, model_arrays(model), {"format": FORMAT, "architecture": layer_spec(model)})


def load(path):
    """Rebuild a model saved by :func:`save_model`, without pickle or the building code."""
    arrays, meta = read_archive(path)
    if meta.get("format") != FORMAT or "architecture" not in meta:
        raise ValueError(f"{path}: not an npnet model archive (format {meta.get('format')!r})")
    try:
        model = build_layer(meta["architecture"])
    except (TypeError, KeyError) as err:
        raise ValueError(f"{path}: cannot rebuild the architecture ({err})") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    assign_model_arrays(model, arrays, path)
    return model


def load_weights(model, path):
    """Load parameters and buffers saved from a model of the same architecture into ``model``."""
    arrays, _ = read_archive(path)
    assign_model_arrays(model, arrays, path)
    return model
