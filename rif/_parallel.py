"""Row-parallel passes on a small pool of Python threads.

rif's own per-row kernels (Numba, ``nogil``) and single-threaded BLAS calls
release the GIL, so plain threads run them in parallel. Threads are used
rather than Numba's ``parallel=True`` (OpenMP) because two thread pools that
both spin while idle, OpenMP's and OpenBLAS's, slow each other 2-5x whenever
their calls alternate (measured on this project's 2-core machines); pool
threads that wait on a queue cost nothing when idle, so a pass is never
slower than its serial version.

A pass is cut into a fixed number of *parts* chosen by the caller, and the
threads take contiguous groups of parts; a result summed part by part in
order is therefore the same whatever the number of threads.
"""

import contextlib
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POOL = None
_THREAD_PREFIX = "rif-pass"
_MAX_THREADS = contextvars.ContextVar("rif_max_threads", default=None)


def available_threads():
    """Threads a pass may use: the CPUs this process may run on, or the current limit."""
    limit = _MAX_THREADS.get()
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:   # pragma: no cover - macOS and Windows
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, limit) if limit else cpus)


@contextlib.contextmanager
def limit_threads(n):
    """Cap the threads of rif's passes over the data inside a ``with`` block.

    The cap also applies to the torch threads of :mod:`rif.deep` (which uses
    as many as this allows, and one below 2048 parameters).

    Parameters
    ----------
    n : int >= 1
        At most this many threads (the default is one per CPU the process may
        use). Results are identical for every ``n``.

    Examples
    --------
    >>> import rif
    >>> with rif.limit_threads(1):
    ...     pass   # refits here run their passes on the calling thread only
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"limit_threads needs an integer number of threads, got {n!r}")
    if n < 1:
        raise ValueError(f"limit_threads needs at least one thread, got {n}")
    token = _MAX_THREADS.set(int(n))
    try:
        yield
    finally:
        _MAX_THREADS.reset(token)


def _pool():
    """The pass threads of this process (a process forked from one that had them starts anew:
    threads do not survive ``fork``, and the inherited executor would wait for them forever)."""
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1),
                                   thread_name_prefix=_THREAD_PREFIX)
        _POOL_PID = os.getpid()
    return _POOL


_POOL_PID = None


def run_part_groups(func, n_parts):
    """[func(start, stop), ...] over contiguous groups of ``range(n_parts)``, in order.

    ``func`` must release the GIL to gain from the threads; the caller's thread
    runs the first group itself. Called from one of the pool's own threads it
    runs everything there (a pool thread waiting on the pool could deadlock it).
    """
    on_pool_thread = threading.current_thread().name.startswith(_THREAD_PREFIX)
    n_groups = 1 if on_pool_thread else min(n_parts, available_threads())   # no waiting on ourselves
    bounds = [k * n_parts // n_groups for k in range(n_groups + 1)]
    if n_groups == 1:
        return [func(0, n_parts)]
    futures = [_pool().submit(func, bounds[k], bounds[k + 1]) for k in range(1, n_groups)]
    first = func(bounds[0], bounds[1])
    return [first] + [f.result() for f in futures]


_CONTROLLER = None


def blas_limit(n_threads):
    """Context that holds the BLAS libraries (NumPy's and SciPy's OpenBLAS) to ``n_threads``."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n_threads, user_api="blas")
