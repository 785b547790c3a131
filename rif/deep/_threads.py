"""torch's CPU threads during rif.deep's computations, chosen as the core package chooses BLAS's.

rif.deep's work is mostly many small vmapped products (per-sample gradients,
Jacobian-vector products, L-BFGS refits over mini-batches). Intra-op threads
gain nothing on operations that small, and OpenMP threads that spin while idle
slow each other badly on a busy machine (on two cores shared with other jobs,
one proximal refit of a 51-parameter MLP took 0.07 s on one thread and 3.7 s
on two). So, like the core package's refits
(:mod:`rif._solvers`), a computation runs on one thread unless the selected
parameters number at least ``rif._config.THREADED_BLAS_SIZE``, where the
p x p factorisation of the exact solver and the larger products do gain; then
it takes the threads :func:`rif._parallel.available_threads` allows (the CPUs
this process may run on, capped by :func:`rif.limit_threads`), and never more
than torch was set to use (``torch.set_num_threads``). torch's own setting is
restored afterwards. On a GPU the thread count only affects host-side work.
``torch.set_num_threads`` is process-wide: other threads of the process that
run torch at the same time see the same count.
"""

import contextlib
import functools

import torch

from .. import _config, _parallel


def thread_count(n_params):
    """Threads for a computation over ``n_params`` selected parameters (see the module docstring)."""
    if n_params < _config.THREADED_BLAS_SIZE:
        return 1
    return max(1, min(_parallel.available_threads(), torch.get_num_threads()))


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``torch.set_num_threads(n)``, restoring torch's setting afterwards."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_threads(method):
    """Decorate a method of an object with ``_n_threads()`` to run under that many torch threads."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch_threads(self._n_threads()):
            return method(self, *args, **kwargs)
    return wrapper
