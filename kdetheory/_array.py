"""Array-namespace dispatch (NumPy | CuPy): the ONLY module that imports cupy.

Drivers are written once against a namespace ``xp`` (``numpy`` or ``cupy``); the public
wrappers pick it from their inputs, so NumPy in gives NumPy out and CuPy in gives CuPy out.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

__all__ = [
    "BACKENDS",
    "cupy_available",
    "get_cupy",
    "is_cupy_array",
    "namespace",
    "numba_available",
    "resolve_backend",
    "to_numpy",
    "to_namespace",
]

BACKENDS = ("auto", "numpy", "numba", "cupy")


@functools.lru_cache(maxsize=1)
def _cupy_module():
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver, no device, broken install: all mean "no usable CuPy"
        return None
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return _cupy_module() is not None


@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    """True when numba imports (it is a core dependency, but keep the NumPy path alive)."""
    return importlib.util.find_spec("numba") is not None


def get_cupy():
    """Return the cupy module, or raise a RuntimeError that says how to get it."""
    cp = _cupy_module()
    if cp is None:
        raise RuntimeError(
            "backend='cupy' needs CuPy and a CUDA GPU, and none was found; install "
            "kdetheory[cuda12] or kdetheory[cuda13] on a machine with an NVIDIA GPU, "
            "or pass backend='numpy' / 'numba'."
        )
    return cp


def is_cupy_array(a) -> bool:
    """True for a cupy.ndarray (checked without importing cupy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def namespace(*arrays):
    """Return the array namespace shared by ``arrays`` (``None`` entries are ignored).

    Raises
    ------
    ValueError
        When NumPy and CuPy arrays are mixed (or CuPy arrays live on different devices).
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None and hasattr(a, "shape")}
    if kinds == {True, False}:
        raise ValueError(
            "arrays: got a mix of NumPy and CuPy arrays; move them to one device first "
            "(cupy.asarray(x) or cupy.asnumpy(x))."
        )
    if kinds == {True}:
        cp = get_cupy()
        devices = {a.device.id for a in arrays if is_cupy_array(a)}
        if len(devices) > 1:
            raise ValueError(
                f"arrays: got CuPy arrays on devices {sorted(devices)}; put them on one GPU."
            )
        return cp
    return np


def to_numpy(a):
    """Return ``a`` as a NumPy array (copying from the GPU when needed)."""
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_namespace(a, xp):
    """Return ``a`` as an array of namespace ``xp`` (numpy or cupy)."""
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


def resolve_backend(backend, xp, *, auto="numpy") -> str:
    """Turn ``backend`` into a concrete compute path for inputs of namespace ``xp``.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba", "cupy"}
        The requested backend.
    xp : module
        Namespace of the inputs (from :func:`namespace`).
    auto : {"numpy", "numba"}
        What ``"auto"`` means for host inputs in the caller (each driver knows which of
        its CPU paths is faster: BLAS-shaped work is "numpy", loop-shaped work "numba").

    Returns
    -------
    str
        "numpy", "numba" or "cupy". CuPy inputs always compute on the GPU.

    Raises
    ------
    ValueError
        Unknown backend, or a CPU backend asked for with CuPy inputs.
    RuntimeError
        ``"cupy"`` asked for without CuPy or a GPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: got {backend!r}; pass one of {BACKENDS}.")
    if xp is not np:
        if backend in ("numpy", "numba"):
            raise ValueError(
                f"backend: got {backend!r} with CuPy inputs; pass backend='cupy' or 'auto', "
                "or move the inputs to the host with cupy.asnumpy."
            )
        return "cupy"
    if backend == "auto":
        return "numba" if auto == "numba" and numba_available() else "numpy"
    if backend == "cupy":
        get_cupy()
    if backend == "numba" and not numba_available():
        raise RuntimeError("backend='numba' needs numba; pip install numba, or pass backend='numpy'.")
    return backend
