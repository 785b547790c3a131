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

#: Rows per block when a pass over the data would otherwise materialise an
#: (n, p) temporary. The buffer is ``ROW_CHUNK * p`` float64 values.
ROW_CHUNK = 4096

#: Samples whose 1 - h_i falls below this are flagged as numerically singular:
#: 1 - h_i then has fewer than half of its digits right.
LEVERAGE_TOL = 1.4901161193847656e-08  # sqrt(float64 eps)
