"""GPU twins of the CPU kernels, imported lazily.

The KDE estimators need no RawKernel: their array-shaped work (hashing as one matrix product,
block kernel sums) is written once against the array namespace ``xp`` and runs on CuPy as is;
their loop-shaped work (bucket lookup) stays on the host.
"""
