"""Batch normalisation whose statistics are those of the global batch over all ranks."""
import contextlib

import numpy as np

from .comm import allreduce_sum, require_mpi


class BatchNormSync:
    """The ``sync`` hook of a BatchNorm layer: one small Allreduce in forward and one in
    backward, so that the layer normalises with the global batch's statistics.

    Forward sums, per channel, the count, the sum and the sum of squares (in float64,
    as local mean and centred sum of squares, which keeps the variance accurate).
    Backward sums the two gradient sums that the input gradient needs; each rank's
    are weighted by its share of the rows, matching a loss that is each rank's mean
    and gradients averaged with weights proportional to the local batch sizes
    (:class:`~distributed.flat.GradientBuffer`). A synchronised K-rank step then equals
    the one-process step over the same global batch.

    Every rank must run forward and backward of every synchronised layer in the same
    order; eval mode and ``no_grad`` inference use running statistics and communicate
    nothing. Inside :func:`local_statistics` the layer uses its own batch only.
    """

    enabled = True

    def __init__(self, comm, timeout_s=None):
        self.comm, self.timeout_s = comm, timeout_s

    def _sum(self, array):
        return allreduce_sum(self.comm, array, self.timeout_s)

    def statistics(self, rows):
        """(C, M) rows of this rank -> the global (mean, biased variance, count)."""
        dt = rows.dtype
        n = rows.shape[1]
        stats = np.zeros((4, rows.shape[0]), np.float64)
        if n:
            mean = rows.mean(axis=1, dtype=np.float64)
            centred = rows - mean.astype(dt)[:, None]
            stats[0] = n
            stats[1] = n * mean
            stats[2] = np.einsum("ij,ij->i", centred, centred)
            stats[3] = n * mean * mean
        if BatchNormSync.enabled:
            self._sum(stats)
        count = int(stats[0, 0])
        if count < 2:
            raise ValueError(f"BatchNorm (synchronised): training needs more than one value per channel "
                             f"over all ranks, got {count}")
        mean = stats[1] / count
        # total sum of squares about the global mean: within-rank part + between-rank part
        var = (stats[2] + stats[3] - count * mean * mean) / count
        return mean.astype(dt), np.maximum(var, 0).astype(dt), count

    def gradient_sums(self, dbias, dweight, n):
        """This rank's sums over its n rows -> the row-weighted average of every rank's."""
        sums = np.empty((3, len(dbias)), np.float64)
        sums[0], sums[1], sums[2] = n, n * dbias, n * dweight
        if BatchNormSync.enabled:
            self._sum(sums)
        total = sums[0, 0]
        return (sums[1] / total).astype(dbias.dtype), (sums[2] / total).astype(dweight.dtype)


def convert_sync_batchnorm(model, comm=None, timeout_s=None):
    """Make every BatchNorm layer of ``model`` use the global batch's statistics (as
    PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``); returns ``model``.

    The layers keep their class, parameters and saved form; only their ``sync`` hook is
    set. ``timeout_s`` bounds each wait for the other ranks (see ``comm.allreduce_sum``).
    """
    from layers.normalization import _BatchNorm
    mpi = require_mpi()
    comm = mpi.COMM_WORLD if comm is None else comm
    for layer in model.modules():
        if isinstance(layer, _BatchNorm):
            layer.sync = BatchNormSync(comm, timeout_s)
    return model


@contextlib.contextmanager
def local_statistics():
    """Within this block synchronised BatchNorm layers use their own rank's batch only
    (for work that not every rank does, such as locating a non-finite value)."""
    previous = BatchNormSync.enabled
    BatchNormSync.enabled = False
    try:
        yield
    finally:
        BatchNormSync.enabled = previous
