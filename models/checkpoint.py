"""Training checkpoints: the model, the optimizer and schedule state, the position in
training and every random generator's state, in one ``.npz`` without pickle.

``load_checkpoint`` checks the whole archive against the objects it restores
(model arrays, optimizer scalars and state arrays, schedule fields, generator
states, progress fields and their types) before it changes any of them.
"""
import itertools
import json
import math
import numbers
import re

import numpy as np

from .serialization import (MAX_DEPTH, assign_model_arrays, check_model_arrays, check_rebuilds, layer_spec, load,
                            model_arrays, read_archive, rebuild, write_archive)

FORMAT = "npnet-checkpoint-1"

# the progress record train.py keeps: field -> accepted types (an rng state is a dict)
PROGRESS_FIELDS = {"epoch": int, "step_in_epoch": int, "global_step": int, "epoch_rng": (dict, type(None))}


def save_checkpoint(path, model, optimizer, schedule, generators, progress, info=None):
    """Atomically write everything needed to continue training exactly (after checking,
    as :func:`models.serialization.save_model` does, that the model can be rebuilt).

    ``generators`` is the ordered list of every Generator the run draws from;
    ``progress`` and ``info`` are JSON-able dicts (position in training, run details).
    """
    arrays = model_arrays(model, prefix="model/")
    scalars = {}
    for key, value in optimizer.state_dict().items():
        if isinstance(value, np.ndarray):
            arrays[f"optim/{key}"] = value
        else:
            scalars[key] = value
    spec = layer_spec(model)
    check_rebuilds(model, spec)
    meta = {"format": FORMAT, "architecture": spec, "optimizer": scalars,
            "optimizer_class": _class_name(optimizer), "schedule_class": type(schedule).__name__,
            "schedule": schedule.state_dict(), "rng": [g.bit_generator.state for g in generators],
            "progress": progress, "info": info or {}}
    write_archive(path, arrays, meta)


def _class_name(obj):
    """The class a checkpoint records: a wrapper's (``DistributedOptimizer``) is the
    optimizer it wraps, whose state it saves, so that one file serves any number of ranks."""
    return type(getattr(obj, "wrapped_optimizer", obj)).__name__


def load_checkpoint(path, model, optimizer, schedule, generators, progress_fields=PROGRESS_FIELDS):
    """Restore a checkpoint into the given objects; returns its ``progress`` dict.

    Everything is checked against the archive before anything is changed; a
    ValueError names the file and the entry at fault. ``progress_fields`` maps
    each required progress field to its accepted type(s).
    """
    arrays, meta = read_archive(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an npnet training checkpoint")
    fields = {k: _field(path, meta, k, t) for k, t in
              (("optimizer", dict), ("schedule", dict), ("rng", list), ("progress", dict))}
    for key, obj in (("optimizer_class", optimizer), ("schedule_class", schedule)):
        if key in meta and meta[key] != _class_name(obj):  # older checkpoints do not say
            raise ValueError(f"{path}: the checkpoint was saved with {_short(_described(meta[key]))}, "
                             f"this run has {_described(_class_name(obj))}")
    _check_same_model(path, meta.get("architecture"), model, arrays)
    check_model_arrays(model, arrays, path, prefix="model/")
    state = _optimizer_state(path, optimizer, fields["optimizer"], arrays)
    _check_like(path, "schedule", fields["schedule"], schedule.state_dict())
    _check_generators(path, fields["rng"], generators)
    progress = fields["progress"]
    _check_progress(path, progress, progress_fields)
    size = progress.get("epoch_size")  # the Trainer's [samples, batch size] of the epoch in progress
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 2**63 for v in size)):
        raise ValueError(f"{path}: progress field 'epoch_size' is {_short(size)}, expected [samples, batch size]")
    other = sorted(k for k in arrays if not k.startswith(("model/params/", "model/buffers/", "optim/")))
    if other:
        raise ValueError(f"{path}: unexpected entries {other}")

    assign_model_arrays(model, arrays, path, prefix="model/")
    optimizer.load_state_dict(state)
    schedule.load_state_dict(fields["schedule"])
    for g, s in zip(generators, fields["rng"]):
        g.bit_generator.state = s
    return progress


def _check_same_model(path, architecture, model, arrays):
    """When the saved arrays cannot fit ``model`` (other names or shapes), say which
    network the checkpoint holds and which one this run built, rather than list arrays."""
    current = model_arrays(model, prefix="model/")
    saved = {k: v for k, v in arrays.items() if k.startswith(("model/params/", "model/buffers/"))}
    if set(saved) == set(current) and all(saved[k].shape == v.shape for k, v in current.items()):
        return
    spec = json.loads(json.dumps(layer_spec(model)))
    if not isinstance(architecture, dict) or architecture == spec:
        return  # the same network, arrays at fault: check_model_arrays names them

    def values(entries):
        return sum(int(v.size) for k, v in entries.items() if k.startswith("model/params/"))

    saved_outline, outline = _outline(architecture), _outline(spec)
    differ = ""
    if saved_outline == outline:  # the same layers as far as shown: name the first array that differs
        name = next((k for k in current if k in saved and saved[k].shape != current[k].shape), None)
        only_saved = next((k for k in saved if k not in current), None)
        only_here = next((k for k in current if k not in saved), None)
        if name is not None:
            differ = f"; {name} is {saved[name].shape} there, {current[name].shape} here"
        elif only_here is not None:
            differ = f"; {only_here} is in this network, not in the checkpoint"
        elif only_saved is not None:
            differ = f"; {_clean(only_saved, 80)} is in the checkpoint, not in this network"
    raise ValueError(f"{path}: the checkpoint holds another network than this one: saved "
                     f"{saved_outline} ({values(saved):,} parameter values), this run built "
                     f"{outline} ({values(current):,} parameter values){differ}")


def _clean(text, limit):
    """A name from a file, safe to print on one line: word characters, dots and slashes only."""
    return re.sub(r"[^\w./]", "?", text[:limit])


def _layer_entries(node, depth):
    """The layer entries (dicts with a string ``class``) in ``node``, lists flattened,
    ``MAX_DEPTH`` levels at most."""
    if depth > MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            yield from _layer_entries(item, depth + 1)
    elif isinstance(node, dict) and isinstance(node.get("class"), str):
        yield node


def _outline_pieces(entry, depth):
    yield _clean(entry["class"], 40)
    config = entry.get("config")
    if not isinstance(config, dict):
        return
    opened = False
    for value in config.values():
        for child in _layer_entries(value, depth + 1):
            yield ", " if opened else "["
            opened = True
            yield from _outline_pieces(child, depth + 1)
    if opened:
        yield "]"


def _outline(spec, limit=300):
    """``Sequential[Conv2D, ReLU, Residual[...]]``: the layer classes of a saved
    architecture, nested containers in brackets, cut at ``limit`` characters. The spec
    comes from a file: anything that is not a layer entry is left out, names are shown
    with word characters and dots only, and the walk stops at ``limit``."""
    text, size = [], 0
    for i, entry in enumerate(_layer_entries(spec, 0)):
        for piece in itertools.chain([", "] if i else [], _outline_pieces(entry, 0)):
            text.append(piece)
            size += len(piece)
            if size > limit:
                return "".join(text)[:limit] + "..."
    return "".join(text) or "an unreadable architecture"


def _field(path, meta, key, kind):
    if key not in meta:
        raise ValueError(f"{path}: checkpoint has no {key!r} entry")
    if not isinstance(meta[key], kind):
        raise ValueError(f"{path}: checkpoint {key!r} is a {type(meta[key]).__name__}, "
                         f"expected a {kind.__name__}")
    return meta[key]


def _kind_ok(value, like):
    """True when ``value`` may stand where ``like`` stood: the same kind of JSON value."""
    if isinstance(like, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(like, bool)
    if isinstance(like, numbers.Integral):
        return isinstance(value, numbers.Integral)
    if isinstance(like, numbers.Real):
        return isinstance(value, numbers.Real)
    if like is None:
        return True
    return isinstance(value, type(like))


def _check_like(path, what, saved, current):
    """``saved`` must have exactly ``current``'s keys, each value of the same kind."""
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    if missing or unexpected:
        raise ValueError(f"{path}: {what} state does not match (missing {missing}, unexpected {unexpected})")
    for key, like in current.items():
        value = saved[key]
        if not _kind_ok(value, like):
            raise ValueError(f"{path}: {what} entry {key!r} is {_short(value)}, expected a "
                             f"{type(like).__name__}")
        # every number in optimizer and schedule state is a rate or a count
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and \
                not (_finite(value) and 0 <= value < 2**63):
            raise ValueError(f"{path}: {what} entry {key!r} is {_short(value)}, expected a finite "
                             "non-negative number")


def _finite(x):
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _optimizer_state(path, optimizer, scalars, arrays):
    """The dict for ``optimizer.load_state_dict``, every entry checked."""
    current = {k: v for k, v in optimizer.state_dict().items() if not isinstance(v, np.ndarray)}
    # checkpoints written before hyper-parameters were saved keep the current ones
    hyper = optimizer.hyperparameters()
    current = {k: v for k, v in current.items() if k in scalars or k not in hyper}
    _check_like(path, "optimizer", scalars, current)
    state = dict(scalars)
    for key, value in arrays.items():
        if not key.startswith("optim/"):
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] != "optim/state" or not parts[1].isdigit() or \
                int(parts[1]) >= len(optimizer.params) or not parts[2]:
            raise ValueError(f"{path}: unexpected optimizer entry {key!r}")
        param = optimizer.params[int(parts[1])]
        if value.shape != param.shape or value.dtype.kind != "f":
            raise ValueError(f"{path}: optimizer entry {key!r} is {value.dtype} {value.shape}, "
                             f"expected real floating {param.shape}")
        state[key[len("optim/"):]] = value
    return state


def _check_rng_state(path, where, state, bit_generator=None):
    """Set ``state`` on a fresh bit generator of the right type: the one test that
    accepts exactly what ``bit_generator.state = state`` will."""
    kind = type(bit_generator) if bit_generator is not None else \
        getattr(np.random, str(state.get("bit_generator")), None) if isinstance(state, dict) else None
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        raise ValueError(f"{path}: {where} is not a random generator state")
    try:
        kind().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise ValueError(f"{path}: {where} is not a valid {kind.__name__} state ({err})") from None


def _check_generators(path, states, generators):
    if len(states) != len(generators):
        raise ValueError(f"{path}: checkpoint has {len(states)} random generators, "
                         f"the run has {len(generators)}")
    for i, (state, g) in enumerate(zip(states, generators)):
        _check_rng_state(path, f"rng[{i}]", state, g.bit_generator)


def _check_progress(path, progress, fields):
    for key, kind in fields.items():
        if key not in progress:
            raise ValueError(f"{path}: progress has no {key!r} field")
        value = progress[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ValueError(f"{path}: progress field {key!r} is {_short(value)}, expected "
                             + " or ".join(k.__name__ for k in kinds))
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < 2**63:
            raise ValueError(f"{path}: progress field {key!r} is out of range ({_short(value)})")
        if isinstance(value, dict):
            _check_rng_state(path, f"progress field {key!r}", value)


def _described(class_name):
    """A class name for a message; the Trainer's stand-in for "no schedule" is private."""
    return "no schedule" if class_name == "_NoSchedule" else class_name


def load_model(path):
    """The model in a saved model (``model.save``) or in a training checkpoint."""
    arrays, meta = read_archive(path)
    if meta.get("format") != FORMAT:
        return load(path)
    if "architecture" not in meta:
        raise ValueError(f"{path}: checkpoint has no 'architecture' entry")
    model_entries = {k: v for k, v in arrays.items() if k.startswith("model/")}
    return rebuild(meta["architecture"], model_entries, path, prefix="model/")
