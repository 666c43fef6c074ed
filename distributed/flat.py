"""Every gradient of a model in one flat buffer, averaged over the ranks by one Allreduce."""
import math
import signal
from dataclasses import dataclass

import numpy as np

from .comm import allreduce_sum

# control values carried at the end of the buffer, summed with the gradients
_COUNT, _NONFINITE, _STOP, _SIGNAL = -4, -3, -2, -1
_CONTROL = 4


@dataclass
class Reduced:
    """The result of one :meth:`GradientBuffer.allreduce` (the same on every rank).

    ``grads``: averaged gradients, views into the buffer (valid until the next call;
    copies in the parameter's dtype where it is narrower than the buffer's, float16),
    a dict or a list as given; ``count``: the global batch size; ``nonfinite``: how many
    ranks had a non-finite loss or gradient; ``stop``: how many ranks asked to stop;
    ``signal``: the signal they were stopped by (0: none; SIGTERM when they differ).
    """
    grads: object
    count: int
    nonfinite: int
    stop: int
    signal: int = 0

    @property
    def finite(self):
        return self.nonfinite == 0


class GradientBuffer:
    """A preallocated flat buffer for the gradients of a fixed list of parameters.

    ``allreduce(grads, local_count)`` writes ``local_count * grad`` for every
    gradient into the buffer, appends four control values (the local count, a
    non-finite flag, a stop flag and the signal that asked to stop), sums the whole
    buffer over the ranks with one ``Allreduce`` and divides by the summed count: the gradient of the mean loss
    over the global batch, exact when the ranks hold different numbers of samples.
    With ``timeout_s`` a rank that waits longer than that for the others raises
    :class:`~distributed.comm.CollectiveTimeout` instead of waiting forever.

    Shape:
        buffer: (sum of parameter sizes + 4,), the parameters' dtype, float32 at least
    """

    def __init__(self, comm, params, timeout_s=None):
        if isinstance(params, dict):
            self.names, arrays = list(params), list(params.values())
        else:
            arrays = list(params)
            self.names = None
        if not arrays:
            raise ValueError("GradientBuffer: got no parameters")
        self.comm, self.timeout_s = comm, timeout_s
        # at least float32: local_count * grad and the counts overflow float16 (65504) or
        # lose integers above 2048; wider parameters keep their own precision
        self.dtype = np.result_type(*arrays, np.float32)
        self.shapes = [a.shape for a in arrays]
        self.param_dtypes = [a.dtype for a in arrays]
        sizes = [a.size for a in arrays]
        self.size = sum(sizes)
        self.buffer = np.zeros(self.size + _CONTROL, self.dtype)
        bounds = np.cumsum([0] + sizes)
        self.views = [self.buffer[lo:hi].reshape(shape)
                      for lo, hi, shape in zip(bounds[:-1], bounds[1:], self.shapes)]

    def fits(self, params):
        """Whether this buffer serves ``params`` as they are now: the same names (or
        count), shapes and dtypes (``model.astype`` gives a model new arrays)."""
        arrays = list(params.values()) if isinstance(params, dict) else list(params)
        names = list(params) if isinstance(params, dict) else None
        return (names == self.names and [a.shape for a in arrays] == self.shapes
                and [a.dtype for a in arrays] == self.param_dtypes)

    def _ordered(self, grads):
        if self.names is None:
            grads = list(grads)
            if len(grads) != len(self.views):
                raise ValueError(f"GradientBuffer: got {len(grads)} gradients for {len(self.views)} parameters")
            return grads
        if set(grads) != set(self.names):
            raise ValueError(f"GradientBuffer: gradients do not match the parameters (missing "
                             f"{sorted(set(self.names) - set(grads))}, unexpected {sorted(set(grads) - set(self.names))})")
        return [grads[name] for name in self.names]

    def allreduce(self, grads, local_count, stop=0):
        """Average ``grads`` (a dict like the parameters, a list in their order, or None
        when this rank's loss was not finite) over the ranks, weighted by ``local_count``.
        ``stop``: the number of the signal that asks this rank to stop (0: none).

        Every rank must call it once per step, also with ``local_count == 0``.
        """
        buf = self.buffer
        nonfinite = grads is None
        if nonfinite or local_count == 0:
            buf[:self.size] = 0
        else:
            weight = self.dtype.type(local_count)
            for view, g in zip(self.views, self._ordered(grads)):
                if g.shape != view.shape:
                    raise ValueError(f"GradientBuffer: gradient of shape {g.shape}, parameter has {view.shape}")
                np.multiply(g, weight, out=view)
        buf[_COUNT], buf[_NONFINITE], buf[_STOP], buf[_SIGNAL] = local_count, nonfinite, bool(stop), int(stop)
        allreduce_sum(self.comm, buf, self.timeout_s)
        count, flagged, stops, signals = (int(round(v)) for v in buf[-_CONTROL:])
        signum = 0 if not stops else signals // stops if signals % stops == 0 else int(signal.SIGTERM)
        # a NaN or inf anywhere makes the sum non-finite (one fast pass); only then is
        # the element-wise test needed, to tell it from an overflow of the sum itself
        if flagged == 0 and not math.isfinite(float(buf[:self.size].sum())):
            flagged = int(not np.isfinite(buf[:self.size]).all())
        if count > 0:
            buf[:self.size] /= self.dtype.type(count)
        # a weighted mean lies within the gradients' range: narrower parameters get their own dtype back
        views = [v if v.dtype == d else v.astype(d) for v, d in zip(self.views, self.param_dtypes)]
        out = views if self.names is None else dict(zip(self.names, views))
        return Reduced(out, count, flagged, stops, signum)

