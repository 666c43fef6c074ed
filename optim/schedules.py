"""Learning-rate schedules. Each sets ``optimizer.lr`` from the base rate and a step counter.

Call ``schedule.step()`` once per iteration or once per epoch, whichever unit the
schedule's sizes are given in. ``lr_at(t)`` is the rate after ``t`` calls.
"""
import bisect
import math

from layers.validation import check_float, check_size


class Schedule:
    """Base class: remembers the optimizer's starting rate and the number of steps taken."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_step = 0

    def lr_at(self, t):
        raise NotImplementedError

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)
        return self.optimizer.lr

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state):
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self.lr_at(self.last_step)


def _positive(owner, name, value):
    """A finite real number > 0."""
    return check_float(owner, name, value, 0.0, low_open=True)


class ConstantLR(Schedule):
    """``lr = base_lr`` always."""

    def lr_at(self, t):
        return self.base_lr


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (t // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        step_size = check_size("StepLR", "step_size", step_size)
        gamma = _positive("StepLR", "gamma", gamma)
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(Schedule):
    """``lr = base_lr * gamma ** (number of milestones <= t)``."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        milestones = [check_size("MultiStepLR", "milestone", m) for m in milestones]
        if milestones != sorted(milestones):
            raise ValueError(f"MultiStepLR: milestones must be increasing, got {milestones}")
        gamma = _positive("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer)
        self.milestones, self.gamma = milestones, gamma

    def lr_at(self, t):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** t``."""

    def __init__(self, optimizer, gamma):
        gamma = _positive("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer)
        self.gamma = gamma

    def lr_at(self, t):
        return self.base_lr * self.gamma ** t


class CosineLR(Schedule):
    """Linear warm-up for ``warmup_steps``, then cosine annealing to ``min_lr`` at ``total_steps``.

    Warm-up: ``lr = base_lr * (t + 1) / (warmup_steps + 1)``; then
    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t - w) / (total - w))) / 2``.
    """

    def __init__(self, optimizer, total_steps, min_lr=0.0, warmup_steps=0):
        total_steps = check_size("CosineLR", "total_steps", total_steps)
        warmup_steps = check_size("CosineLR", "warmup_steps", warmup_steps, minimum=0)
        if warmup_steps >= total_steps:
            raise ValueError(f"CosineLR: warmup_steps must be in [0, total_steps={total_steps}), "
                             f"got {warmup_steps}")
        min_lr = check_float("CosineLR", "min_lr", min_lr, 0.0)
        super().__init__(optimizer)
        self.total_steps, self.min_lr, self.warmup_steps = total_steps, min_lr, warmup_steps
        if self.warmup_steps:
            optimizer.lr = self.lr_at(0)

    def lr_at(self, t):
        w = self.warmup_steps
        if t < w:
            return self.base_lr * (t + 1) / (w + 1)
        progress = min(1.0, (t - w) / (self.total_steps - w))
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


class InvLR(Schedule):
    """Caffe's "inv" policy: ``lr = base_lr * (1 + gamma * t) ** (-power)``."""

    def __init__(self, optimizer, gamma, power):
        gamma = _positive("InvLR", "gamma", gamma)
        power = _positive("InvLR", "power", power)
        super().__init__(optimizer)
        self.gamma, self.power = gamma, power

    def lr_at(self, t):
        return self.base_lr * (1 + self.gamma * t) ** (-self.power)


SCHEDULE_FORMS = ("constant", "cosine", "step:EPOCHS:GAMMA", "multistep:E1,E2,...:GAMMA", "exp:GAMMA_PER_EPOCH",
                  "inv:GAMMA:POWER")
_ARITY = {"constant": 0, "cosine": 0, "step": 2, "multistep": 2, "exp": 1, "inv": 2}


def parse_schedule(text):
    """``"name:arg:arg"`` -> ``(name, [numbers])``; ``multistep``'s first argument is a list.

    Every argument must be a positive finite number (``step:0``, ``exp:-1``,
    ``inv:inf`` are refused) and milestones increasing; ValueError otherwise.
    """
    name, *rest = str(text).split(":")
    if name not in _ARITY or len(rest) != _ARITY[name]:
        raise ValueError(f"unknown schedule {text!r}; expected one of {', '.join(SCHEDULE_FORMS)}")
    try:
        if name == "multistep":
            vals = [[float(v) for v in rest[0].split(",")], float(rest[1])]
            numbers = vals[0] + [vals[1]]
        else:
            vals = numbers = [float(v) for v in rest]
    except ValueError:
        raise ValueError(f"schedule {text!r}: arguments must be numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ValueError(f"schedule {text!r}: arguments must be positive finite numbers")
    if name == "multistep" and any(a >= b for a, b in zip(vals[0], vals[0][1:])):
        raise ValueError(f"schedule {text!r}: milestones must be increasing")
    return name, vals


def schedule_from_string(text, optimizer, steps_per_epoch, total_steps, warmup_epochs=0.0):
    """The schedule that ``text`` describes, stepped once per iteration.

    Sizes in ``text`` are in epochs (``step:2:0.5`` halves the rate every 2 epochs;
    ``exp:GAMMA`` multiplies it by GAMMA per epoch) and are converted to iterations
    with ``steps_per_epoch``; ``cosine`` anneals over ``total_steps`` after a linear
    warm-up of ``warmup_epochs``.
    """
    name, vals = parse_schedule(text)
    if name == "constant":
        return ConstantLR(optimizer)
    if name == "cosine":
        return CosineLR(optimizer, total_steps, warmup_steps=int(warmup_epochs * steps_per_epoch))
    if name == "step":
        return StepLR(optimizer, max(1, int(vals[0] * steps_per_epoch)), vals[1])
    if name == "multistep":
        return MultiStepLR(optimizer, [int(e * steps_per_epoch) for e in vals[0]], vals[1])
    if name == "exp":
        return ExponentialLR(optimizer, vals[0] ** (1 / steps_per_epoch))
    return InvLR(optimizer, vals[0], vals[1])
