"""How a :class:`~models.trainer.Trainer` spreads training over processes.

A strategy is the seam for data parallelism: every rank holds the whole model, takes
its share of each global batch, and the gradients and metric sums are combined across
ranks. :class:`LocalStrategy` is the single-process case, where every method is an
identity. A multi-process strategy implements the same eight members; the Trainer
calls each from exactly one place:

===================================  ==============================================
``rank``, ``size``, ``is_root``      this process's index, the number of processes,
                                     whether it writes files and reports (rank 0)
``shard(indices)``                   this rank's part of a global batch of indices
                                     (fit's batches, evaluate's ``arange(n)``)
``reduce_gradients(grads, count)``   the gradients averaged over ranks, each rank
                                     weighted by its local batch size ``count``
``allreduce_sum(array)``             float64 sums over ranks (loss sums, correct
                                     counts, sample counts, confusion counts)
``broadcast_model(model)``           root's parameters and buffers to every rank
                                     (once, at the start of ``fit``)
``check_in_sync(model)``             raise if the ranks' models differ (at the end
                                     of every epoch)
``stop_requested(signum)``           the signal that stops training before the next
                                     step (0: none), given the one this rank got
                                     (or 0): the same answer on every rank
===================================  ==============================================
"""
import numpy as np


class LocalStrategy:
    """One process: the whole batch is this rank's, sums are already global."""

    rank = 0
    size = 1
    is_root = True

    def shard(self, indices):
        return indices

    def reduce_gradients(self, grads, local_count):
        return grads

    def stop_requested(self, signum):
        return signum

    def allreduce_sum(self, array):
        return np.asarray(array, dtype=np.float64)

    def broadcast_model(self, model):
        pass

    def check_in_sync(self, model):
        pass
