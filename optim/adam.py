"""Adam and AdamW."""
import numpy as np

from layers.validation import check_float

from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's conventions and bias correction.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    Weight decay is coupled (added to the gradient), as in ``torch.optim.Adam``.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        name = type(self).__name__
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = check_float(name, "beta1", betas[0], 0.0, 1.0, high_open=True)
        b2 = check_float(name, "beta2", betas[1], 0.0, 1.0, high_open=True)
        eps = check_float(name, "eps", eps, 0.0)
        weight_decay = check_float(name, "weight_decay", weight_decay, 0.0)
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = (b1, b2), eps, weight_decay

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
