"""Synchronous data parallelism over MPI ranks for the Trainer."""
import sys
import time

import numpy as np

from .comm import abort_on_uncaught_exception, allreduce_sum, require_mpi, wait
from .flat import GradientBuffer
from .optimizer import broadcast_parameters
from .sync_batchnorm import BatchNormSync


class RanksDiverged(RuntimeError):
    """The ranks' parameters are no longer identical."""


class MPIStrategy:
    """Each rank trains on its slice of every global batch; gradients are averaged.

    The Trainer calls, on every rank in the same order: :meth:`broadcast_model` when
    fitting starts (rank 0's parameters and buffers go to every rank),
    :meth:`shard` to cut this rank's part out of each global batch of indices,
    :meth:`reduce_gradients` once per step (one Allreduce of a flat buffer, see
    :class:`~distributed.flat.GradientBuffer`), :meth:`allreduce_sum` for metrics
    and :meth:`check_in_sync` at the end of each epoch. Only the root rank writes
    logs, checkpoints and figures.

    ``comm`` defaults to ``MPI.COMM_WORLD``. With ``abort_on_error`` (the default) an
    exception that escapes on any rank aborts the whole job instead of leaving the
    other ranks waiting in their next collective. ``timeout_s`` bounds every wait for
    the other ranks (a rank that hangs without dying): the broadcast when fitting starts,
    the gradient and metric Allreduces and the end-of-epoch check; past it,
    :class:`~distributed.comm.CollectiveTimeout` is raised (give ``convert_sync_batchnorm``
    the same timeout, and every rank the same value).
    """

    def __init__(self, comm=None, abort_on_error=True, timeout_s=None):
        mpi = require_mpi()
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        self._buffer = None
        self.timeout_s = timeout_s
        self._stop = 0
        self.last = None  # the last step's Reduced result (global count, flags)
        if abort_on_error and self.size > 1:
            abort_on_uncaught_exception(self.comm)

    def shard(self, indices):
        """This rank's contiguous part of ``indices``; the parts differ in size by at most one."""
        n = len(indices)
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return indices[start:start + base + (self.rank < extra)]

    def reduce_gradients(self, grads, local_count):
        """Gradients of the global batch's mean loss, the same on every rank.

        ``grads`` holds the gradients of this rank's mean loss over its
        ``local_count`` samples (None when its loss or a gradient was not finite).
        When any rank's was not finite, the result is None on every rank, so that
        every rank stops at the same step; ``self.last`` tells how many ranks were
        affected. Synchronised BatchNorm layers then fall back to local statistics,
        so that each rank can look for the cause on its own.
        """
        if self._buffer is None:
            raise RuntimeError("MPIStrategy.reduce_gradients: call broadcast_model(model) first")
        self.last = self._buffer.allreduce(grads, local_count, self._stop)
        if not self.last.finite:
            BatchNormSync.enabled = False
            return None
        return self.last.grads

    def stop_requested(self, signum):
        """The signal that stops training before the next step (0: go on), the same on
        every rank.

        ``signum`` (the signal this rank received, or 0) is sent with the next
        gradient Allreduce; the answer is the signal any rank had sent with the last
        one, so all ranks stop after the same step.
        """
        self._stop = self._stop or int(signum)
        return self.last.signal if self.last is not None and self.last.stop else 0

    def allreduce_sum(self, array):
        """Element-wise float64 sum of ``array`` over the ranks."""
        return allreduce_sum(self.comm, np.array(array, dtype=np.float64), self.timeout_s)

    def broadcast_model(self, model):
        """Copy rank 0's parameters and buffers into every rank's model, in place (at the
        start of fitting, which also clears a stop request and the fallback to local
        BatchNorm statistics left by an earlier fit)."""
        self._stop, self.last = 0, None
        BatchNormSync.enabled = True
        if self._buffer is None or not self._buffer.fits(model.params):
            self._buffer = GradientBuffer(self.comm, model.params, self.timeout_s)
        broadcast_parameters(model, self.comm, timeout_s=self.timeout_s)

    def check_in_sync(self, model):
        """Raise :class:`RanksDiverged` on every rank when the parameters differ.

        A float64 checksum per parameter (its sum and the sum of its squares) is
        gathered from every rank and compared with rank 0's; identical arrays give
        identical sums because every rank adds in the same order.
        """
        names = sorted(model.params)
        sums = np.array([[np.sum(p, dtype=np.float64), np.vdot(p, p)]
                         for p in (model.params[n] for n in names)], dtype=np.float64)
        everyone = np.empty((self.size,) + sums.shape, np.float64)
        wait(self.comm.Iallgather(sums, everyone), self.timeout_s, "the end-of-epoch parameter check")
        bad = [(rank, names[i]) for rank in range(1, self.size)
               for i in np.flatnonzero((everyone[rank] != everyone[0]).any(axis=1))]
        if bad:
            ranks = sorted({r for r, _ in bad})
            raise RanksDiverged(f"parameters differ between ranks: rank(s) {ranks} disagree with rank 0 "
                                f"on {sorted({n for _, n in bad})[:5]}")

    def abort(self, code=1, grace_s=1.0):
        """Stop every rank of the job (the launcher kills them), after ``grace_s``
        seconds for this rank's last output to reach the launcher."""
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(grace_s)
        self.comm.Abort(code)
