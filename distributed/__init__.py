"""Data-parallel training over MPI (optional: ``pip install "npnet[mpi]"``).

Nothing here imports mpi4py until an object that needs it is created, so the rest
of npnet works without it; asking for MPI without it raises an ImportError that
names the extra to install. Importing this package loads neither numpy nor mpi4py
(names are resolved on first use), so ``distributed.threads`` can run before numpy.
"""
import importlib

_EXPORTS = {
    "comm": ["INSTALL_HINT", "CollectiveTimeout", "abort_on_uncaught_exception", "allreduce_sum",
             "launched_by_mpi", "require_mpi", "world"],
    "flat": ["GradientBuffer", "Reduced"],
    "optimizer": ["DistributedOptimizer", "NonFiniteGradient", "broadcast_parameters"],
    "strategy": ["MPIStrategy", "RanksDiverged"],
    "sync_batchnorm": ["BatchNormSync", "convert_sync_batchnorm", "local_statistics"],
    "threads": ["limit_blas_threads", "launcher_local_size"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'distributed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
