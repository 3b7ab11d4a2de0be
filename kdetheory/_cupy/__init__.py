"""GPU twins of the CPU kernels (CUDA C++ compiled at first use by NVRTC through cupy.RawModule).

Imported lazily by the drivers (the kernel tables of ``kdetheory._stream`` and
``kdetheory.attention._blocks``), so that ``import kdetheory`` never imports CuPy.
"""
