"""Training diagnostics: dead ReLUs, gradient norms, update-to-weight ratios, and
locating the first layer whose values stop being finite."""
import numpy as np

from layers.activations import ReLU


class Diagnostics:
    """Collects, over an epoch, what tells a healthy network from a sick one.

    * dead ReLU units: per ReLU layer, the fraction of its units (every output
      position of a sample) that were never positive in any batch of the epoch,
      so their gradient was zero everywhere;
    * per parameter tensor, the mean gradient L2 norm and the mean ratio
      ``||update|| / ||weight||`` (healthy training is usually near 1e-3).
    """

    def __init__(self, model):
        self.model = model
        self.relus = [(name, layer) for name, layer in model.named_modules() if isinstance(layer, ReLU)]
        self.reset()

    def reset(self):
        self.ever_active = {name: None for name, _ in self.relus}
        self.grad_norm = {}
        self.update_ratio = {}
        self.steps = 0

    def after_forward(self):
        for name, relu in self.relus:
            mask = relu.active_mask()
            if mask is None:
                continue
            seen = mask.any(axis=0)
            prev = self.ever_active[name]
            self.ever_active[name] = seen if prev is None else prev | seen

    def before_step(self):
        """Call just before the optimizer step: remembers the weights."""
        self._before = {k: v.copy() for k, v in self.model.params.items()}

    def after_step(self, grads):
        self.steps += 1
        for name, p in self.model.params.items():
            g = float(np.linalg.norm(grads[name]))
            w = float(np.linalg.norm(self._before[name]))
            u = float(np.linalg.norm(p - self._before[name]))
            self.grad_norm[name] = self.grad_norm.get(name, 0.0) + g
            self.update_ratio[name] = self.update_ratio.get(name, 0.0) + (u / w if w > 0 else 0.0)

    def summary(self):
        """JSON-able dict of the epoch's figures."""
        dead = {name: (None if mask is None else float(1 - mask.mean()))
                for name, mask in self.ever_active.items()}
        n = max(self.steps, 1)
        return {"dead_relu_fraction": dead,
                "grad_norm": {k: v / n for k, v in self.grad_norm.items()},
                "update_ratio": {k: v / n for k, v in self.update_ratio.items()}}

    @staticmethod
    def format(summary):
        """A compact multi-line text of :meth:`summary`."""
        lines = ["diagnostics:"]
        dead = ", ".join(f"{k} {v:.1%}" for k, v in summary["dead_relu_fraction"].items() if v is not None)
        if dead:
            lines.append(f"  dead ReLU units: {dead}")
        lines.append(f"  {'parameter':<22}{'grad norm':>11}{'update/weight':>15}")
        for k in summary["grad_norm"]:
            lines.append(f"  {k:<22}{summary['grad_norm'][k]:>11.3e}{summary['update_ratio'][k]:>15.2e}")
        return "\n".join(lines)


def first_nonfinite(model, x, dout_fn):
    """Run ``model`` layer by layer on ``x`` and report where values first stop being finite.

    ``dout_fn(out)`` gives the upstream gradient for the final output (the loss's).
    Returns e.g. ``"forward of layer 3 (Conv2D)"`` or ``"backward of layer 5 (Dense)"``,
    or None when everything is finite. Needs a ``Sequential``.
    """
    outs = [x]
    for i, layer in enumerate(model.layers):
        outs.append(layer.forward(outs[-1]))
        if not np.isfinite(outs[-1]).all():
            return f"forward of layer {i} ({type(layer).__name__})"
    dout = dout_fn(outs[-1])
    if not np.isfinite(dout).all():
        return "the loss gradient"
    for i in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[i]
        dout, grads = layer.backward(dout)
        bad = [k for k, g in grads.items() if not np.isfinite(g).all()]
        if bad or (dout is not None and not np.isfinite(dout).all()):
            what = f" (gradient of {', '.join(bad)})" if bad else ""
            return f"backward of layer {i} ({type(layer).__name__}){what}"
    return None
