"""Access to MPI through mpi4py, loaded only when distributed training is asked for."""
import os
import sys
import time
import traceback

INSTALL_HINT = 'pip install "npnet[mpi]"'


def require_mpi():
    """The ``mpi4py.MPI`` module; ImportError naming the extra to install when it is absent."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: {INSTALL_HINT} "
                          f"(installs mpi4py and the mpich wheel); {err}") from None
    return MPI


def launched_by_mpi(environ=None):
    """True when this process was started by an MPI launcher (mpiexec, srun, ...)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK",
                                              "PMI_FD", "PMI_PORT"))


def world():
    """``MPI.COMM_WORLD``."""
    return require_mpi().COMM_WORLD


def abort_on_uncaught_exception(comm, grace_s=1.0):
    """Make an exception that escapes on any one rank abort the whole job.

    Without it the other ranks wait forever in their next collective for the rank
    that died. The traceback is written first, marked with the rank, and given
    ``grace_s`` seconds to reach the launcher's output; then ``comm.Abort`` has the
    launcher stop every rank. Installing it twice changes nothing.
    """
    if getattr(sys.excepthook, "aborts_mpi_job", False):
        return

    def hook(kind, value, tb):
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"[rank {comm.Get_rank()}/{comm.Get_size()}] uncaught exception; aborting the job\n{text}")
        sys.stderr.flush()
        time.sleep(grace_s)
        comm.Abort(1)

    hook.aborts_mpi_job = True
    sys.excepthook = hook


class CollectiveTimeout(RuntimeError):
    """Another rank did not reach a collective in time (it hangs, or died unnoticed)."""


def allreduce_sum(comm, array, timeout_s=None):
    """Sum ``array`` (contiguous) over the ranks in place; returns it.

    With ``timeout_s`` the wait for the other ranks is bounded: past it
    :class:`CollectiveTimeout` is raised instead of waiting forever.
    """
    mpi = require_mpi()
    if timeout_s is None:
        comm.Allreduce(mpi.IN_PLACE, array, op=mpi.SUM)
        return array
    wait(comm.Iallreduce(mpi.IN_PLACE, array, op=mpi.SUM), timeout_s, "an Allreduce")
    return array


def wait(request, timeout_s, what):
    """Complete the non-blocking collective ``request``; with ``timeout_s``, raise
    :class:`CollectiveTimeout` naming ``what`` after that many seconds instead of waiting
    forever for a rank that hangs. The collective is then still pending (MPI cannot cancel
    one): the job is meant to end, as ``MPIStrategy(abort_on_error=True)`` makes it."""
    if timeout_s is None:
        request.Wait()
        return
    start = time.monotonic()
    while not request.Test():
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise CollectiveTimeout(f"{what} waited {waited:.0f} s for the other ranks "
                                    f"(timeout {timeout_s:g} s): one of them hangs or died")
        if waited > 0.01:  # spin for the usual few milliseconds, then yield the core
            time.sleep(0.001)
