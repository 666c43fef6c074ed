"""How many BLAS threads each rank of an MPI job should use, decided before numpy loads.

OpenBLAS and MKL size their thread pools when they are first loaded, so a script
started as ``mpiexec -n K python train.py`` must set the thread-count variables at
its very top, before anything imports numpy. This module imports nothing heavy:

    from distributed.threads import limit_blas_threads
    limit_blas_threads()
    import numpy as np
"""
import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# per launcher: the number of ranks started on this host (hydra/MPICH, Open MPI,
# Slurm, Intel MPI); PMI_SIZE is the job's size, an upper bound used last
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE",
                        "MPI_LOCAL_NRANKS", "PMI_SIZE")


def launcher_local_size(environ=None):
    """Ranks on this host according to the MPI launcher's environment, or None when the
    process was not started by a known launcher."""
    environ = os.environ if environ is None else environ
    for name in LOCAL_SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def limit_blas_threads(environ=None):
    """Under an MPI launcher, give each rank its share of the cores as BLAS threads.

    Sets every variable of ``THREAD_VARIABLES`` that is not already set to
    ``max(1, cores // ranks_on_this_host)``, so K ranks on one machine do not
    oversubscribe it; a variable the user set is left alone. Does nothing outside
    a launcher. Returns the thread count chosen, or None. Call before numpy is imported.
    """
    environ = os.environ if environ is None else environ
    local = launcher_local_size(environ)
    if local is None:
        return None
    threads = max(1, available_cores() // local)
    for name in THREAD_VARIABLES:
        environ.setdefault(name, str(threads))
    return threads
