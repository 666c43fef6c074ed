"""Allocator settings for training loops.

A training step allocates the same large temporaries (layer outputs, gradients)
every time. glibc's malloc serves blocks above a threshold with fresh memory
maps and trims the heap when its top is free, so each step pays page faults
(the kernel zeroing fresh pages) for memory it has just given back. Raising the
thresholds keeps that memory in the process for reuse. This is process-wide, so
the library never does it on import: the training program opts in.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(mmap_threshold=32 * 2**20, trim_threshold=2**30, top_pad=64 * 2**20):
    """Ask glibc's malloc to keep freed memory mapped for reuse.

    Blocks up to ``mmap_threshold`` (glibc's maximum, 32 MiB) come from the heap,
    which is trimmed only when ``trim_threshold`` bytes are free at its top and
    grows by ``top_pad`` at a time. Returns True when applied, False where the C
    library is not glibc (nothing is changed there).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad)))
