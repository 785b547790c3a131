"""Numba options, chosen in one place.

``fastmath`` stays off: influence computations divide by ``1 - h_i`` and solve
near-singular systems, so NaN and inf must propagate exactly as IEEE says.
Serial kernels are cached on disk so that only the first import compiles.
"""

JIT_OPTIONS = {
    "nogil": True,
    "cache": True,
    "fastmath": False,
    "error_model": "numpy",
}

#: Kernels whose inner loops are sums (dot products, gradient accumulation) may
#: reassociate them so that they vectorise; NaN and inf still propagate (only the
#: ``reassoc`` and ``contract`` flags are set, not ``nnan``/``ninf``). Summation
#: order then differs from NumPy's by rounding only.
REDUCTION_JIT_OPTIONS = dict(JIT_OPTIONS, fastmath={"reassoc", "contract"})

#: Rows per block when a pass over the data would otherwise materialise an
#: (n, p) temporary: at most ROW_CHUNK rows and at most BLOCK_VALUES values,
#: so the buffer stays below 32 MiB whatever p is.
ROW_CHUNK = 4096
BLOCK_VALUES = 2**22

#: A fused pass over dense rows sums its gradient in at most this many consecutive
#: parts (at least 1024 rows each), run in parallel and added in order: the result
#: is the same whatever the number of threads.
FUSED_PARTS = 16

#: rif keeps the p x p Hessian, its factor and a work copy dense (3 p^2 doubles):
#: 32768 parameters need about 26 GB, beyond what one machine of this project has.
MAX_DENSE_PARAMS = 32768

#: Samples whose 1 - h_i falls below this are flagged as numerically singular:
#: 1 - h_i then has fewer than half of its digits right.
LEVERAGE_TOL = 1.4901161193847656e-08  # sqrt(float64 eps)

#: From this many parameters on, p x p factorisations and Gram products inside refits
#: use BLAS's own threads (measured: a Cholesky of p = 1001 is no faster on two threads,
#: p = 4001 is 1.6x faster); below it rif shares the work among its own threads.
THREADED_BLAS_SIZE = 2048

#: A Gram product on rif's threads sums at most this many p x p parts, in order, so
#: that the result does not depend on the number of threads.
GRAM_PARTS = 4
