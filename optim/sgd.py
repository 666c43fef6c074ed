"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from layers.validation import check_float

from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD with PyTorch's conventions.

    With weight decay ``wd`` the gradient is ``g = grad + wd * p`` (coupled).
    With momentum ``mu``: ``buf = mu * buf + g`` (``buf = g`` on the first step);
    the step direction is ``g + mu * buf`` with Nesterov, otherwise ``buf``.
    Then ``p -= lr * direction``.
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        hyper = self._checked_hyperparameters(
            {"momentum": momentum, "nesterov": bool(nesterov), "weight_decay": weight_decay})
        super().__init__(params, lr)
        self._set_hyperparameters(hyper)

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _checked_hyperparameters(self, values):
        momentum = check_float("SGD", "momentum", values["momentum"], 0.0)
        weight_decay = check_float("SGD", "weight_decay", values["weight_decay"], 0.0)
        nesterov = bool(values["nesterov"])
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        return {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}

    def _update(self, p, g, state):
        dt = p.dtype.type
        if self.weight_decay:
            g = g + dt(self.weight_decay) * p
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.astype(p.dtype, copy=True)
            else:
                buf *= dt(self.momentum)
                buf += g
            if self.nesterov:
                g = g + dt(self.momentum) * buf
            else:
                g = buf
        p -= dt(self.lr) * g
