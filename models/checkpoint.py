"""Training checkpoints: the model, the optimizer and schedule state, the position in
training and every random generator's state, in one ``.npz`` without pickle."""
import numpy as np

from .container import build_layer, layer_spec
from .serialization import assign_model_arrays, load, model_arrays, read_archive, write_archive

FORMAT = "npnet-checkpoint-1"


def save_checkpoint(path, model, optimizer, schedule, generators, progress, info=None):
    """Atomically write everything needed to continue training exactly.

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
    meta = {"format": FORMAT, "architecture": layer_spec(model), "optimizer": scalars,
            "schedule": schedule.state_dict(), "rng": [g.bit_generator.state for g in generators],
            "progress": progress, "info": info or {}}
    write_archive(path, arrays, meta)


def load_checkpoint(path, model, optimizer, schedule, generators):
    """Restore a checkpoint into the given objects; returns its ``progress`` dict.

    Everything is checked against the archive before anything is changed.
    """
    arrays, meta = read_archive(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an npnet training checkpoint")
    if len(meta["rng"]) != len(generators):
        raise ValueError(f"{path}: checkpoint has {len(meta['rng'])} random generators, "
                         f"the run has {len(generators)}")
    state = dict(meta["optimizer"])
    state.update({k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
    assign_model_arrays(model, arrays, path, prefix="model/")
    optimizer.load_state_dict(state)
    schedule.load_state_dict(meta["schedule"])
    for g, s in zip(generators, meta["rng"]):
        g.bit_generator.state = s
    return meta["progress"]


def load_model(path):
    """The model in a saved model (``model.save``) or in a training checkpoint."""
    arrays, meta = read_archive(path)
    if meta.get("format") != FORMAT:
        return load(path)
    model = build_layer(meta["architecture"])
    assign_model_arrays(model, arrays, path, prefix="model/")
    return model
