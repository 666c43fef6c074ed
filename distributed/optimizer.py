"""Horovod-style wrapper for a hand-written training loop."""
from .comm import require_mpi, wait
from .flat import GradientBuffer


class NonFiniteGradient(FloatingPointError):
    """Some rank's loss or gradient was not finite; raised on every rank at the same step."""


class DistributedOptimizer:
    """Wraps any npnet optimizer so that ``step`` first averages the gradients over the ranks.

    ``step(grads, local_count=1)``: ``grads`` are this rank's gradients of its mean
    loss over ``local_count`` samples (None when its loss was not finite); they are
    averaged over the ranks with one Allreduce of a flat buffer, weighted by the
    counts, and the wrapped optimizer then takes the same step on every rank. A
    non-finite value on any rank raises :class:`NonFiniteGradient` on every rank
    before anything is updated. Everything else (``lr``, ``state_dict``, schedules)
    is the wrapped optimizer's::

        opt = DistributedOptimizer(SGD(model.params, 0.1, momentum=0.9), comm)
        broadcast_parameters(model, comm)
        for xb, yb in my_shard_of_each_batch:
            out = model.forward(xb)
            if len(yb):
                loss = loss_fn.forward(out, yb)
                _, grads = model.backward(loss_fn.backward())
            else:  # a global batch smaller than the ranks left none here: take part all the same
                _, grads = model.backward(np.zeros_like(out))
            opt.step(grads, local_count=len(yb))

    A rank with no sample of a global batch still calls ``step`` (its gradients weigh
    nothing) and runs forward and backward, which synchronised BatchNorm layers need.
    """

    def __init__(self, optimizer, comm=None):
        mpi = require_mpi()
        self.__dict__["optimizer"] = optimizer
        self.__dict__["comm"] = mpi.COMM_WORLD if comm is None else comm
        params = dict(zip(optimizer.names, optimizer.params))
        self.__dict__["buffer"] = GradientBuffer(self.comm, params)

    @property
    def wrapped_optimizer(self):
        """The optimizer whose step is taken (checkpoints record its class and state)."""
        return self.optimizer

    def step(self, grads, local_count=1):
        names = self.optimizer.names
        if grads is not None and (not isinstance(grads, dict) or (
                set(grads) != set(names) and getattr(self.optimizer, "_by_position", False))):
            # a list, or (an optimizer built from a list) the dict model.backward returns: by position
            grads = list(grads.values()) if isinstance(grads, dict) else list(grads)
            if len(grads) != len(names):
                raise ValueError(f"DistributedOptimizer.step: got {len(grads)} gradients for {len(names)} parameters")
            grads = dict(zip(names, grads))
        reduced = self.buffer.allreduce(grads, local_count)
        if not reduced.finite:
            raise NonFiniteGradient(f"non-finite loss or gradient on {reduced.nonfinite} of "
                                    f"{self.comm.Get_size()} ranks")
        self.optimizer.step(reduced.grads)
        return reduced

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.optimizer, name, value)


def broadcast_parameters(model, comm=None, root=0, timeout_s=None):
    """Copy ``root``'s parameters and buffers into every rank's model, in place; with
    ``timeout_s``, :class:`~distributed.comm.CollectiveTimeout` when a rank does not come."""
    mpi = require_mpi()
    comm = mpi.COMM_WORLD if comm is None else comm
    for name, array in sorted({**model.params, **model.buffers}.items()):
        if not array.flags.c_contiguous:
            raise ValueError(f"broadcast_parameters: {name!r} is not a contiguous array")
        wait(comm.Ibcast(array, root=root), timeout_s, f"the broadcast of {name!r}")
