"""Input checks shared by every public function.

Each check raises ValueError/TypeError naming the argument, what was received and how to
fix it, and returns the normalised value (arrays as float64 or float32, 2-D, finite).
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from ._array import from_dlpack, is_foreign_array, namespace

__all__ = [
    "check_matrix",
    "check_same_columns",
    "check_same_rows",
    "check_weights",
    "check_open_unit",
    "check_positive",
    "check_int",
    "check_choice",
    "float_dtype",
    "result_float_dtype",
    "PreconditionWarning",
]


class PreconditionWarning(UserWarning):
    """A theorem's precondition fails but the computation is still possible."""


def _is_real_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_matrix(name, a, *, ndim=2, dtype=None, allow_empty=False):
    """Validate a real, finite array of dimension ``ndim`` and return it as floating point.

    Integers and booleans are converted to float64; float32 stays float32 unless ``dtype``
    says otherwise; complex, object and string dtypes are refused. NumPy stays NumPy and CuPy
    stays CuPy; arrays of other libraries exposing ``__dlpack__`` (PyTorch, JAX) are viewed as
    NumPy or CuPy without a copy. Masked arrays are refused (their mask would be ignored).
    ``ndim`` may be an int or a tuple of allowed ints.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name}: got a numpy masked array, whose mask would be ignored; "
                        "pass a.filled(value) or a.compressed().")
    if is_foreign_array(a):
        a = from_dlpack(a)
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        if isinstance(a, (list, tuple)):
            a = np.asarray(a)
        else:
            raise TypeError(
                f"{name}: got an object of type {type(a).__name__}; pass a NumPy or CuPy array."
            )
    xp = namespace(a)
    kind = a.dtype.kind
    if kind not in "fiub":
        raise TypeError(f"{name}: got dtype {a.dtype}; pass a real floating-point (or integer) array, {_FIX[kind]}.")
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in allowed:
        want = " or ".join(f"{k}-D" for k in allowed)
        raise ValueError(f"{name}: got an array of shape {tuple(a.shape)}; pass a {want} array.")
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {tuple(a.shape)}; pass at least one row and column.")
    if dtype is None:
        dtype = float_dtype(a.dtype)
    a = xp.asarray(a, dtype=dtype)
    if not bool(xp.isfinite(a).all()):
        bad = int((~xp.isfinite(a)).sum())
        raise ValueError(
            f"{name}: got {bad} NaN or infinite entries; remove or impute them before calling."
        )
    return a


#: How to turn each refused dtype kind into a real floating-point array.
_FIX = {
    "c": "e.g. x.real.astype(float) for complex data",
    "O": "e.g. np.asarray(x, dtype=float) for an object array of numbers",
    "U": "e.g. np.asarray(x, dtype=float) to parse strings of numbers",
    "S": "e.g. np.asarray(x, dtype=float) to parse strings of numbers",
    "M": "e.g. (t - t0) / np.timedelta64(1, 's') for datetimes",
    "m": "e.g. t / np.timedelta64(1, 's') for time differences",
    "V": "e.g. one float field of a structured array, x['field'].astype(float)",
}


def float_dtype(dtype):
    """The floating dtype :func:`check_matrix` turns ``dtype`` into: float32 and float64 stay, integers,
    booleans, float16 and extended precision become float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" and 4 <= dtype.itemsize <= 8 else np.dtype(np.float64)


def result_float_dtype(*arrays):
    """NumPy's promotion of the floating dtypes of ``arrays`` (None entries ignored).

    Every public function computes in (and returns) this dtype, so ``(float32, float64)`` inputs
    give float64 whatever their order, and all-float32 inputs give float32.
    """
    dtypes = [float_dtype(a.dtype) for a in arrays if a is not None and hasattr(a, "dtype")]
    return np.result_type(*dtypes) if dtypes else np.dtype(np.float64)


def check_same_columns(name_a, a, name_b, b):
    """Both matrices must have the same number of columns (the dimension d)."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_b}: got {b.shape[-1]} columns but {name_a} has {a.shape[-1]}; "
            "the points must live in the same dimension."
        )


def check_same_rows(name_a, a, name_b, b):
    """Both arrays must have the same number of rows (e.g. keys and values)."""
    if a.shape[-2] != b.shape[-2]:
        raise ValueError(
            f"{name_b}: got {b.shape[-2]} rows but {name_a} has {a.shape[-2]}; "
            f"pass one row of {name_b} per row of {name_a}."
        )


def check_weights(name, w, n, *, xp=None, dtype=np.float64):
    """Validate a non-negative finite weight vector of length ``n`` (None means ones)."""
    if xp is None:
        xp = np if w is None else namespace(w)
    if w is None:
        return xp.ones(n, dtype=dtype)
    w = check_matrix(name, w, ndim=1, dtype=dtype)
    if w.shape[0] != n:
        raise ValueError(f"{name}: got {w.shape[0]} weights for {n} points; pass one weight per point.")
    if bool((w < 0).any()):
        raise ValueError(
            f"{name}: got {int((w < 0).sum())} negative weights (min {float(w.min()):.3g}); "
            "weights must be non-negative (split signed weights into positive and negative parts)."
        )
    return w


def check_open_unit(name, x):
    """``x`` must be a real number in the open interval (0, 1)."""
    if not _is_real_number(x) or not (0.0 < float(x) < 1.0):
        raise ValueError(f"{name}: got {x!r}; pass a number strictly between 0 and 1.")
    return float(x)


def check_positive(name, x, *, allow_inf=False, allow_zero=False):
    """``x`` must be a real number > 0 (>= 0 with ``allow_zero``)."""
    ok = _is_real_number(x) and (float(x) >= 0 if allow_zero else float(x) > 0)
    if not ok or (not allow_inf and not np.isfinite(float(x))):
        bound = "greater than or equal to 0" if allow_zero else "greater than 0"
        raise ValueError(f"{name}: got {x!r}; pass a finite number {bound}.")
    return float(x)


def check_int(name, x, *, minimum=None, maximum=None):
    """``x`` must be an integer in [minimum, maximum]."""
    if not isinstance(x, numbers.Integral) or isinstance(x, bool):
        raise TypeError(f"{name}: got {x!r} of type {type(x).__name__}; pass an int.")
    x = int(x)
    if minimum is not None and x < minimum:
        raise ValueError(f"{name}: got {x}; pass an int >= {minimum}.")
    if maximum is not None and x > maximum:
        raise ValueError(f"{name}: got {x}; pass an int <= {maximum}.")
    return x


def check_choice(name, x, choices):
    """``x`` must be one of ``choices``."""
    if x not in choices:
        raise ValueError(f"{name}: got {x!r}; pass one of {tuple(choices)}.")
    return x


def warn_precondition(message):
    """Emit a :class:`PreconditionWarning` (a theorem's hypothesis is not met)."""
    warnings.warn(message, PreconditionWarning, stacklevel=3)
