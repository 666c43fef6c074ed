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
        hyper = self._checked_hyperparameters(
            {"beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": weight_decay})
        super().__init__(params, lr)
        self._check_eps(hyper["eps"])
        self._set_hyperparameters(hyper)

    def _check_eps(self, eps):
        for p in self.params:
            if eps > 0 and p.dtype.type(eps) == 0:
                raise ValueError(f"{type(self).__name__}: eps={eps:g} is 0 in {p.dtype}, so a parameter whose "
                                 "gradient is 0 would be updated by 0/0; give an eps that dtype can hold "
                                 "(1e-4 is usual for float16) or keep the parameters float32")

    def hyperparameters(self):
        """``betas`` is saved as ``beta1`` and ``beta2``."""
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _checked_hyperparameters(self, values):
        name = type(self).__name__
        out = {key: check_float(name, key, values[key], 0.0, 1.0, high_open=True) for key in ("beta1", "beta2")}
        out.update({key: check_float(name, key, values[key], 0.0) for key in ("eps", "weight_decay")})
        if hasattr(self, "params"):  # load_state_dict: the saved eps must suit these parameters too
            self._check_eps(out["eps"])
        return out

    def _set_hyperparameters(self, values):
        self.betas = (values["beta1"], values["beta2"])
        self.eps, self.weight_decay = values["eps"], values["weight_decay"]

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
