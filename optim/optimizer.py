"""What every optimizer shares: the parameter list, validation, state save/restore."""
import numpy as np


class Optimizer:
    """Updates a fixed list of parameter arrays in place from matching gradients.

    ``params`` is a dict (name -> array, e.g. ``model.params``) or a list of
    arrays. ``step(grads)`` takes gradients in the same form: a dict with the
    same names, or a list in the same order.
    """

    def __init__(self, params, lr):
        if isinstance(params, dict):
            self.names, self.params = list(params), list(params.values())
        else:
            self.params = list(params)
            self.names = [str(i) for i in range(len(self.params))]
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for name, p in zip(self.names, self.params):
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"{type(self).__name__}: parameter {name!r} is not a floating numpy array")
        _check(type(self).__name__, "lr", lr, lr >= 0)
        self.lr = float(lr)
        self.step_count = 0
        self.state = [dict() for _ in self.params]

    def _grads_list(self, grads):
        if isinstance(grads, dict):
            if set(grads) != set(self.names):
                missing = sorted(set(self.names) - set(grads))
                extra = sorted(set(grads) - set(self.names))
                raise ValueError(f"{type(self).__name__}.step: gradients do not match the parameters "
                                 f"(missing {missing}, unexpected {extra})")
            grads = [grads[n] for n in self.names]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}.step: got {len(grads)} gradients "
                             f"for {len(self.params)} parameters")
        for name, p, g in zip(self.names, self.params, grads):
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient for {name!r} has shape "
                                 f"{g.shape}, parameter has {p.shape}")
        return grads

    def step(self, grads):
        grads = self._grads_list(grads)
        self.step_count += 1
        for p, g, state in zip(self.params, grads, self.state):
            self._update(p, g, state)

    def _update(self, p, g, state):
        raise NotImplementedError

    def state_dict(self):
        """Flat dict: scalars (lr, hyper-parameters, step) and per-parameter state arrays."""
        out = {"lr": self.lr, "step_count": self.step_count}
        for i, state in enumerate(self.state):
            for key, value in state.items():
                out[f"state.{i}.{key}"] = value
        return out

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` output (shapes checked before anything changes)."""
        new = [dict() for _ in self.params]
        for key, value in state.items():
            if not key.startswith("state."):
                continue
            _, i, name = key.split(".", 2)
            i = int(i)
            if i >= len(self.params) or np.shape(value) != self.params[i].shape:
                raise ValueError(f"{type(self).__name__}: saved state {key!r} does not match the parameters")
            new[i][name] = np.array(value, dtype=self.params[i].dtype)
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        self.state = new


def _check(owner, name, value, ok):
    if not ok:
        raise ValueError(f"{owner}: invalid {name}: {value!r}")
