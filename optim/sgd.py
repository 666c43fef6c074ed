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
        momentum = check_float("SGD", "momentum", momentum, 0.0)
        weight_decay = check_float("SGD", "weight_decay", weight_decay, 0.0)
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        super().__init__(params, lr)
        self.momentum, self.nesterov, self.weight_decay = momentum, bool(nesterov), weight_decay

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
