"""What every optimizer shares: the parameter list, validation, state save/restore."""
import numpy as np

from layers.validation import check_float, check_size


class Optimizer:
    """Updates a fixed list of parameter arrays in place from matching gradients.

    ``params`` is a dict (name -> array, e.g. ``model.params``) or a list of
    arrays (``model.parameters()``). ``step(grads)`` takes a dict with the same
    names or a list in the same order; an optimizer built from a list also takes
    the dict ``model.backward`` returns, matched by position (its order is the
    order of ``model.parameters()``), every shape checked.

    The optimizer holds the arrays themselves and updates them in place. Build it
    after ``model.astype(...)``: a conversion gives the model new arrays and makes
    the old ones read-only, and ``step`` then raises rather than update arrays the
    model no longer uses.
    """

    def __init__(self, params, lr):
        if hasattr(params, "forward") and hasattr(params, "backward"):
            raise TypeError(f"{type(self).__name__}: got the layer or model {type(params).__name__} itself; "
                            "pass its parameters: model.params")
        if isinstance(params, dict):
            self.names, self.params = list(params), list(params.values())
            self._by_position = False
        else:
            self.params = list(params)
            self.names = [str(i) for i in range(len(self.params))]
            self._by_position = True
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for name, p in zip(self.names, self.params):
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"{type(self).__name__}: parameter {name!r} is not a floating numpy array")
            if not p.flags.writeable:
                raise ValueError(f"{type(self).__name__}: parameter {name!r} is read-only")
        self.lr = check_float(type(self).__name__, "lr", lr, 0.0)
        self.step_count = 0
        self.state = [dict() for _ in self.params]

    def _grads_list(self, grads):
        owner = f"{type(self).__name__}.step"
        names = self.names
        if isinstance(grads, dict):
            if self._by_position and set(grads) != set(self.names):
                names, grads = list(grads), list(grads.values())
            elif set(grads) != set(self.names):
                missing = sorted(set(self.names) - set(grads))
                extra = sorted(set(grads) - set(self.names))
                raise ValueError(f"{owner}: gradients do not match the parameters (missing {missing}, "
                                 f"unexpected {extra}); pass the dict model.backward returns for the "
                                 "model whose params built this optimizer")
            else:
                grads = [grads[n] for n in self.names]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{owner}: got {len(grads)} gradients for {len(self.params)} parameters; "
                             "pass the gradients of exactly the parameters this optimizer was built from "
                             "(the dict model.backward returns, or a list in parameters() order)")
        for i, (name, p, g) in enumerate(zip(names, self.params, grads)):
            if not isinstance(g, np.ndarray) or not np.issubdtype(g.dtype, np.floating):
                raise TypeError(f"{owner}: gradient {name!r} is {type(g).__name__} "
                                f"{getattr(g, 'dtype', '')}, expected a floating numpy array")
            if g.shape != p.shape:
                where = f" (position {i}: a dict is matched to a parameter list by position)" \
                    if self._by_position and name != self.names[i] else ""
                raise ValueError(f"{owner}: gradient {name!r} has shape {g.shape}, parameter {i} has "
                                 f"{p.shape}{where}; pass the dict model.backward returns for the "
                                 "model whose parameters built this optimizer")
        return grads

    def step(self, grads):
        """Update every parameter in place from its gradient (see the class docstring)."""
        grads = self._grads_list(grads)
        for name, p in zip(self.names, self.params):
            if not p.flags.writeable:
                raise RuntimeError(
                    f"{type(self).__name__}.step: parameter {name!r} is read-only: the model was "
                    "converted (model.astype) after this optimizer was built, so the optimizer no longer "
                    "holds the model's arrays. Build the optimizer after astype.")
        self.step_count += 1
        for p, g, state in zip(self.params, grads, self.state):
            self._update(p, g, state)

    def _update(self, p, g, state):
        raise NotImplementedError

    def hyperparameters(self):
        """Every setting besides ``lr``, name -> value (``state_dict`` saves them)."""
        return {}

    def _checked_hyperparameters(self, values):
        """``values`` (the keys of :meth:`hyperparameters`) validated as the constructor does."""
        return {}

    def _set_hyperparameters(self, values):
        for name, value in values.items():
            setattr(self, name, value)

    def state_dict(self):
        """Flat dict: scalars (``lr``, every hyper-parameter, ``step_count``) and
        per-parameter state arrays (``state.<i>.<name>``)."""
        out = {"lr": self.lr, **self.hyperparameters(), "step_count": self.step_count}
        for i, state in enumerate(self.state):
            for key, value in state.items():
                out[f"state.{i}.{key}"] = value
        return out

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` output, as ``torch.optim.Optimizer.load_state_dict``
        does: the saved learning rate, hyper-parameters, step count and state replace the
        current ones. Everything is validated first (values as the constructor checks them,
        state shapes against the parameters); on error nothing changes. A hyper-parameter
        missing from ``state`` (saved by an older version) keeps its current value."""
        owner = f"{type(self).__name__}.load_state_dict"
        current = self.hyperparameters()
        new = [dict() for _ in self.params]
        for key, value in state.items():
            if key.startswith("state."):
                parts = key.split(".", 2)
                i = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else len(self.params)
                if i >= len(self.params) or np.shape(value) != self.params[i].shape:
                    raise ValueError(f"{owner}: saved state {key!r} does not match the parameters")
                new[i][parts[2]] = np.array(value, dtype=self.params[i].dtype)
            elif key not in current and key not in ("lr", "step_count"):
                raise ValueError(f"{owner}: unexpected entry {key!r} (expected lr, step_count, "
                                 f"{', '.join(current) or 'no hyper-parameters'} and state.*)")
        for key in ("lr", "step_count"):
            if key not in state:
                raise ValueError(f"{owner}: no {key!r} entry")
        hyper = dict(current)
        for name, like in current.items():
            if name in state:
                if isinstance(like, bool) and not isinstance(state[name], (bool, np.bool_)):
                    raise TypeError(f"{owner}: {name} must be a bool, got {state[name]!r}")
                hyper[name] = state[name]
        hyper = self._checked_hyperparameters(hyper)
        lr = check_float(owner, "lr", state["lr"], 0.0)
        step_count = check_size(owner, "step_count", state["step_count"], 0)
        self._set_hyperparameters(hyper)
        self.lr, self.step_count, self.state = lr, step_count, new
