"""CPU kernels: plain loops over arrays, no RNG, no Python objects (flags in ``_config``).

Imported lazily by the drivers so that ``import kdetheory`` never pays numba's compile time.
"""
