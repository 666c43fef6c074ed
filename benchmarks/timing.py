"""Timing helper shared by the benchmark scripts."""
import statistics
import time


def median_ms(fn, warmup=2, repeat=30):
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
