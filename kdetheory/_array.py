"""Array-namespace dispatch (NumPy | CuPy): the ONLY module that imports cupy.

Drivers are written once against a namespace ``xp`` (``numpy`` or ``cupy``); the public
wrappers pick it from their inputs, so NumPy in gives NumPy out and CuPy in gives CuPy out.

Other array libraries (PyTorch, JAX, ...) come in through DLPack: :func:`dlpack_aware` wraps a
public function so that arrays exposing ``__dlpack__`` are viewed without a copy as NumPy
(host memory) or CuPy (CUDA memory) arrays, and array results go back to the caller's type,
again without a copy (the caller's ``from_dlpack``). NumPy masked arrays are refused: every
computation here would silently ignore the mask.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util

import numpy as np

__all__ = [
    "BACKENDS",
    "cupy_available",
    "dlpack_aware",
    "from_dlpack",
    "is_foreign_array",
    "to_caller",
    "wrap_public",
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
    TypeError
        For a numpy masked array (its mask would be ignored; issue 12 item 25).
    """
    for a in arrays:
        if isinstance(a, np.ma.MaskedArray):
            raise TypeError(
                "arrays: got a numpy masked array, whose mask every computation here would ignore; "
                "pass a plain array: a.filled(value) to fill the masked entries, or "
                "a.compressed() / a[~a.mask] to drop them."
            )
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


# --------------------------------------------------------------------------------------------------
# DLPack: arrays of other libraries in and out, without copies

_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_HOST, _DLPACK_CUDA_MANAGED = 1, 2, 3, 13


def is_foreign_array(a) -> bool:
    """True for an array of another library that exposes ``__dlpack__`` (not NumPy, not CuPy)."""
    return (hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__")
            and not isinstance(a, (np.ndarray, np.generic)) and not is_cupy_array(a))


def from_dlpack(a):
    """View a DLPack-exporting array as NumPy (host memory) or CuPy (CUDA memory), without a copy.

    Parameters
    ----------
    a : array exposing ``__dlpack__`` and ``__dlpack_device__``
        E.g. a PyTorch tensor (CPU or CUDA) or a JAX array.

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        Sharing ``a``'s memory.

    Raises
    ------
    TypeError
        When ``a`` cannot be exported (a PyTorch tensor that requires grad: pass ``t.detach()``), or
        lives on a device other than the host or a CUDA GPU.
    RuntimeError
        For a CUDA array without CuPy (see :func:`get_cupy`).
    """
    device_type = int(a.__dlpack_device__()[0])
    try:
        if device_type in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
            return np.from_dlpack(a)
        if device_type in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
            return get_cupy().from_dlpack(a)
    except (BufferError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "CuPy" in str(exc):
            raise
        raise TypeError(
            f"arrays: could not view the {type(a).__module__}.{type(a).__name__} through DLPack ({exc}); "
            "pass a detached, plain array (for PyTorch: t.detach()), or convert it to NumPy first."
        ) from exc
    raise TypeError(
        f"arrays: got a {type(a).__name__} on DLPack device type {device_type}; only host (1) and CUDA (2) "
        "memory are supported: move it to the CPU or a CUDA GPU first."
    )


def _caller_from_dlpack(like):
    """The ``from_dlpack`` of the library that ``like`` belongs to (torch, jax.numpy, or ``<module>.from_dlpack``)."""
    root = type(like).__module__.split(".")[0]
    if root in ("jax", "jaxlib"):
        return importlib.import_module("jax.numpy").from_dlpack
    module = importlib.import_module(root)
    convert = getattr(module, "from_dlpack", None)
    if convert is None:
        raise TypeError(f"arrays: {root} has no from_dlpack to return results as {type(like).__name__}; pass NumPy arrays.")
    return convert


def to_caller(result, like):
    """Return ``result`` with every NumPy/CuPy array converted to the array type of ``like`` (no copy).

    Tuples, lists and dicts are converted element-wise, dataclass instances field by field
    (``dataclasses.replace``, so frozen results work); everything else is returned unchanged.
    Arrays that DLPack cannot export as they are (read-only NumPy arrays) are copied once.
    """
    convert = _caller_from_dlpack(like)

    def back(x):
        if isinstance(x, np.ndarray) or is_cupy_array(x):
            try:
                return convert(x)
            except (BufferError, TypeError, RuntimeError):  # e.g. read-only: export a contiguous copy
                return convert(x.copy())
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return tuple(back(v) for v in x)
        if isinstance(x, list):
            return [back(v) for v in x]
        if isinstance(x, dict):
            return {k: back(v) for k, v in x.items()}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            changes = {f.name: back(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init}
            return dataclasses.replace(x, **changes)
        return x

    return back(result)


def dlpack_aware(func):
    """Decorate a public function so that it accepts DLPack arrays and returns the caller's array type.

    Positional and keyword arguments exposing ``__dlpack__`` (PyTorch, JAX, ...) are viewed with
    :func:`from_dlpack` (no copy); when there were any, array results are converted back with
    :func:`to_caller` to the type of the first one. NumPy and CuPy calls pass straight through.
    """
    if getattr(func, "__dlpack_aware__", False):
        return func

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        like = next((a for a in (*args, *kwargs.values()) if is_foreign_array(a)), None)
        if like is None:
            return func(*args, **kwargs)
        args = tuple(from_dlpack(a) if is_foreign_array(a) else a for a in args)
        kwargs = {k: from_dlpack(v) if is_foreign_array(v) else v for k, v in kwargs.items()}
        return to_caller(func(*args, **kwargs), like)

    wrapper.__dlpack_aware__ = True
    return wrapper


def wrap_public(namespace_dict, names):
    """Replace the functions ``names`` of a module namespace by their :func:`dlpack_aware` wrappers.

    For package ``__init__`` files: ``wrap_public(globals(), __all__)``. Classes and non-callables
    are left alone (their methods take NumPy/CuPy arrays).
    """
    for name in names:
        obj = namespace_dict.get(name)
        if callable(obj) and not isinstance(obj, type) and hasattr(obj, "__code__"):
            namespace_dict[name] = dlpack_aware(obj)
