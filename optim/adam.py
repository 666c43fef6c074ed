"""Adam and AdamW."""
import numpy as np

from .optimizer import Optimizer, _check


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's conventions and bias correction.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    Weight decay is coupled (added to the gradient), as in ``torch.optim.Adam``.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        name = type(self).__name__
        b1, b2 = betas
        _check(name, "beta1", b1, 0 <= b1 < 1)
        _check(name, "beta2", b2, 0 <= b2 < 1)
        _check(name, "eps", eps, eps >= 0)
        _check(name, "weight_decay", weight_decay, weight_decay >= 0)
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = (float(b1), float(b2)), float(eps), float(weight_decay)

    def _update(self, p, g, state):
        dt = p.dtype.type
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p *= dt(1 - self.lr * self.weight_decay)
            else:
                g = g + dt(self.weight_decay) * p
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= dt(b1)
        m += dt(1 - b1) * g
        v *= dt(b2)
        v += dt(1 - b2) * g * g
        t = self.step_count
        step = self.lr / (1 - b1 ** t)
        denom = np.sqrt(v / dt(1 - b2 ** t))
        denom += dt(self.eps)
        p -= dt(step) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * wd`` before the Adam step.

    Default ``weight_decay=0.01`` as in ``torch.optim.AdamW``.
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
