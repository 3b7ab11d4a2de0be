"""Shared machinery of the claim checks: result records, seeded trials and calibrated statistics.

Every claim module builds a :class:`ClaimResult` and decides its verdict with the same helpers:

* probabilistic guarantees ("fails with probability at most delta") use :func:`binomial_failure_test`
  with a trial count from :func:`trials_for_power`, read by :func:`verdict_from_binomial`;
* scaling laws ("error ~ m^(-1/2)") use :func:`slope_fit`, read by :func:`verdict_from_slope`;
* trials draw their randomness from :func:`trial_generators`, never from a global seed.

The data a figure needs is carried in ``ClaimResult.figure_data`` and written by the driver with
:func:`save_claim_data`, so that claims stay free of file I/O and can run on any worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import stats

__all__ = [
    "VERDICTS",
    "SIZES",
    "check_size",
    "ClaimResult",
    "ClaimSpec",
    "BinomialTest",
    "SlopeFit",
    "binomial_failure_test",
    "trials_for_power",
    "critical_failures",
    "slope_fit",
    "trial_generators",
    "verdict_from_binomial",
    "verdict_from_slope",
    "to_jsonable",
    "save_claim_data",
    "load_claim_data",
    "remove_claim_data",
    "has_claim_data",
    "summarize",
]

VERDICTS = ("holds", "fails", "inconclusive", "skipped", "error")
SIZES = ("quick", "full")

# Names become file names under results/: keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# --------------------------------------------------------------------------------------------------
# JSON conversion


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and non-finite floats into plain JSON values.

    Parameters
    ----------
    value : Any
        A number, string, array, an object with a ``to_dict()`` method (:class:`BinomialTest`,
        :class:`SlopeFit`), or nested dict/list/tuple of those.

    Returns
    -------
    Any
        The same structure made of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
        Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` because strict JSON has no
        literal for them and a bound of ``inf`` is a meaningful measurement.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if hasattr(value, "to_dict") and not isinstance(value, type):  # BinomialTest, SlopeFit, ClaimResult
        return to_jsonable(value.to_dict())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, complex):
        raise TypeError(f"to_jsonable: complex value {value!r} has no JSON form; store real and imaginary parts")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.random.SeedSequence):
        return to_jsonable(value.entropy)
    raise TypeError(
        f"to_jsonable: cannot convert {type(value).__name__} value {value!r} to JSON; "
        "pass numbers, strings, numpy arrays or dicts/lists of them"
    )


# --------------------------------------------------------------------------------------------------
# Records


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """The outcome of checking one claim of the paper.

    Attributes
    ----------
    name : str
        Registry name of the claim, e.g. ``"column_norm_formula"``.
    claim : str
        The claim in words.
    source : str
        Where it comes from: ``"Lemma 3.1"``, ``"SPEC §1"``, ``"Figure 2"``.
    data : str
        What the check ran on (instance family, sizes, number of trials).
    measured : dict or float
        The measured quantities.
    expected : str or dict or float
        The bound or expected value it is compared with.
    verdict : str
        One of ``"holds"``, ``"fails"``, ``"inconclusive"``, ``"skipped"``, ``"error"``.
    seeds : list
        Seed entropy used, so the run can be repeated exactly.
    details : str
        Free text: how the verdict was reached, or the traceback for ``"error"``.
    elapsed_s : float
        Wall-clock seconds of the check.
    figure_data : dict or None
        Arrays and scalars for the claim's figure; written by the driver with :func:`save_claim_data`
        and left out of :meth:`to_dict`.
    """

    name: str
    claim: str
    source: str
    data: str
    measured: Any
    expected: Any
    verdict: str
    seeds: list = dataclasses.field(default_factory=list)
    details: str = ""
    elapsed_s: float = 0.0
    figure_data: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(
                f"ClaimResult: verdict={self.verdict!r} for claim {self.name!r} is not valid; use one of {VERDICTS}"
            )
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"ClaimResult: name={self.name!r} must be a non-empty string of letters, digits, '_', '.', '-' "
                "(it becomes a file name under results/)"
            )

    def to_dict(self) -> dict:
        """Return a JSON-safe dict of every field except ``figure_data`` (numpy types become Python ones)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "figure_data"}
        return to_jsonable(fields)


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """A checkable claim: its name, source, statement and the function that checks it.

    Attributes
    ----------
    name, source, claim : str
        As in :class:`ClaimResult`.
    run : callable
        ``run(size="quick" | "full", rng=0, backend="auto") -> ClaimResult``; must be a module-level function so
        that it can be sent to worker processes.
    """

    name: str
    source: str
    claim: str
    run: Any


def check_size(size: str, claim: str) -> str:
    """Validate the ``size`` argument of a claim's ``run`` (``"quick"`` for CI, ``"full"`` for the report)."""
    if size not in SIZES:
        raise ValueError(f"{claim}: size={size!r} is not valid; pass one of {SIZES}")
    return size


# --------------------------------------------------------------------------------------------------
# Seeds


def trial_generators(seed, n: int) -> list[np.random.Generator]:
    """Return ``n`` independent generators spawned from one seed.

    Parameters
    ----------
    seed : int, sequence of int or numpy.random.SeedSequence
        Root entropy. The same seed gives the same generators in the same order.
    n : int
        Number of generators (one per trial).

    Returns
    -------
    list of numpy.random.Generator
        ``[Generator(PCG64(s)) for s in SeedSequence(seed).spawn(n)]``: statistically independent streams,
        so trials can run in any order or on any worker.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"trial_generators: n={n!r} must be a non-negative int (the number of trials)")
    if isinstance(seed, np.random.Generator):
        raise TypeError(
            "trial_generators: seed is a Generator; pass its seed (int or SeedSequence) so that trials are "
            "reproducible from the recorded entropy"
        )
    if seed is None:
        raise ValueError("trial_generators: seed=None would give unrepeatable trials; pass an int such as 0")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.default_rng(child) for child in root.spawn(int(n))]


# --------------------------------------------------------------------------------------------------
# Binomial failure test


@dataclasses.dataclass(frozen=True)
class BinomialTest:
    """Result of :func:`binomial_failure_test`.

    Attributes
    ----------
    failures, trials : int
        Observed failures out of trials.
    delta : float
        The failure probability the guarantee allows.
    alpha : float
        Significance level.
    p_value : float
        ``P[Binomial(trials, delta) >= failures]``.
    significant : bool
        ``p_value < alpha``: the failure rate is significantly above ``delta``.
    """

    failures: int
    trials: int
    delta: float
    alpha: float
    p_value: float
    significant: bool

    @property
    def rate(self) -> float:
        """Observed failure rate ``failures / trials``."""
        return self.failures / self.trials

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields and the observed rate."""
        return to_jsonable({**dataclasses.asdict(self), "rate": self.rate})


def _check_probability(value, name: str, func: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: {name}={value!r} must be a float in (0, 1)")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{func}: {name}={value!r} must lie strictly between 0 and 1")
    return value


def _check_count(value, name: str, func: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name}={value!r} must be an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{func}: {name}={value!r} must be >= {minimum}")
    return int(value)


def binomial_failure_test(failures: int, trials: int, delta: float, alpha: float = 1e-6) -> BinomialTest:
    """One-sided exact binomial test of "the failure probability is at most delta".

    Parameters
    ----------
    failures : int
        Number of trials in which the guarantee was violated.
    trials : int
        Number of independent trials (>= 1).
    delta : float
        Failure probability allowed by the guarantee, in (0, 1).
    alpha : float, default 1e-6
        Significance level. It is small because the toolkit runs many checks and a false "fails" is costly.

    Returns
    -------
    BinomialTest
        ``significant`` is True when ``failures`` is significantly above ``delta * trials``.

    Notes
    -----
    The p-value is ``scipy.stats.binomtest(failures, trials, delta, alternative="greater").pvalue``. Pair it
    with :func:`trials_for_power` so that a faulty implementation would have been caught.
    """
    func = "binomial_failure_test"
    trials = _check_count(trials, "trials", func, 1)
    failures = _check_count(failures, "failures", func, 0)
    if failures > trials:
        raise ValueError(f"{func}: failures={failures} exceeds trials={trials}")
    delta = _check_probability(delta, "delta", func)
    alpha = _check_probability(alpha, "alpha", func)
    p_value = float(stats.binomtest(failures, trials, delta, alternative="greater").pvalue)
    return BinomialTest(failures, trials, delta, alpha, p_value, p_value < alpha)


def critical_failures(trials, delta: float, alpha: float = 1e-6):
    """Smallest failure count that :func:`binomial_failure_test` calls significant.

    Parameters
    ----------
    trials : int or array of int
        Trial counts.
    delta, alpha : float
        As in :func:`binomial_failure_test`.

    Returns
    -------
    int or ndarray
        ``c`` with ``P[Binomial(trials, delta) >= c] < alpha <= P[Binomial(trials, delta) >= c - 1]``;
        ``trials + 1`` where no count is significant.
    """
    n = np.asarray(trials, dtype=np.int64)
    # isf gives the quantile up to floating-point ties; the two corrections below make it exact against sf.
    c = np.asarray(stats.binom.isf(alpha, n, delta), dtype=np.float64)
    c = np.where(np.isfinite(c), c, n).astype(np.int64) + 1
    for _ in range(3):
        too_low = stats.binom.sf(c - 1, n, delta) >= alpha  # c itself not significant
        c = np.where(too_low & (c <= n), c + 1, c)
        too_high = (c > 0) & (stats.binom.sf(c - 2, n, delta) < alpha)  # c - 1 already significant
        c = np.where(too_high, c - 1, c)
    return c if np.ndim(trials) else int(c)


@functools.lru_cache(maxsize=256)  # verdict_from_binomial asks for the same few deltas over and over
def trials_for_power(delta: float, alpha: float = 1e-6, factor: float = 4, power: float = 0.99,
                     max_trials: int = 10**8) -> int:
    """Smallest number of trials whose binomial test catches a ``factor * delta`` failure rate.

    Parameters
    ----------
    delta : float
        Failure probability the guarantee allows, in (0, 1).
    alpha : float, default 1e-6
        Significance level of :func:`binomial_failure_test`.
    factor : float, default 4
        A faulty implementation fails with probability ``factor * delta`` (must be < 1).
    power : float, default 0.99
        Required probability of detecting it.
    max_trials : int, default 10**8
        Give up above this count.

    Returns
    -------
    int
        The smallest ``N`` with ``P[Binomial(N, factor*delta) >= c(N)] >= power``, ``c(N)`` being
        :func:`critical_failures`. Computed exactly with ``scipy.stats.binom``; power is not monotone in ``N``
        (the critical count moves in integer steps), so every ``N`` is scanned from 1 upward.
    """
    func = "trials_for_power"
    delta = _check_probability(delta, "delta", func)
    alpha = _check_probability(alpha, "alpha", func)
    power = _check_probability(power, "power", func)
    if not factor > 1:
        raise ValueError(f"{func}: factor={factor!r} must be > 1 (the faulty failure rate is factor * delta)")
    bad = factor * delta
    if bad >= 1:
        raise ValueError(f"{func}: factor * delta = {bad!r} must be < 1; lower factor or delta")
    chunk = 1 << 14
    start = 1
    while start <= max_trials:
        n = np.arange(start, min(start + chunk, max_trials + 1), dtype=np.int64)
        c = critical_failures(n, delta, alpha)
        achieved = stats.binom.sf(c - 1, n, bad)
        hits = np.nonzero(achieved >= power)[0]
        if hits.size:
            return int(n[hits[0]])
        start += chunk
        chunk = min(chunk * 2, 1 << 20)
    raise ValueError(
        f"{func}: more than max_trials={max_trials} trials are needed for delta={delta}, alpha={alpha}, "
        f"factor={factor}, power={power}; raise max_trials or test a larger delta"
    )


def verdict_from_binomial(test: BinomialTest, *, factor: float = 4, power: float = 0.99) -> str:
    """Read a :class:`BinomialTest` as a verdict.

    Returns ``"fails"`` when the failure rate is significantly above delta, ``"inconclusive"`` when the test had
    too few trials to catch a ``factor * delta`` implementation with the given power, and ``"holds"`` otherwise.
    """
    if not isinstance(test, BinomialTest):
        raise TypeError(f"verdict_from_binomial: test must be a BinomialTest, got {type(test).__name__}")
    if test.significant:
        return "fails"
    needed = trials_for_power(test.delta, test.alpha, factor, power)
    return "holds" if test.trials >= needed else "inconclusive"


# --------------------------------------------------------------------------------------------------
# Log-log slope fits


@dataclasses.dataclass(frozen=True)
class SlopeFit:
    """Least-squares line through ``(log x, log y)``: ``log y = intercept + slope * log x``.

    Attributes
    ----------
    slope, intercept : float
        Fitted coefficients (natural logarithms).
    stderr : float
        Standard error of the slope.
    ci_low, ci_high : float
        Confidence interval of the slope (Student t with ``n - 2`` degrees of freedom).
    r_value : float
        Correlation coefficient of the log-log points.
    n : int
        Number of points.
    """

    slope: float
    intercept: float
    stderr: float
    ci_low: float
    ci_high: float
    r_value: float
    n: int

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return to_jsonable(dataclasses.asdict(self))


def slope_fit(x, y, confidence: float = 0.95) -> SlopeFit:
    """Fit ``y ~ C * x**slope`` by least squares in log-log space.

    Parameters
    ----------
    x, y : array_like, shape (k,)
        Positive finite values, at least 3 points (two degrees of freedom are spent on the line).
    confidence : float, default 0.95
        Level of the slope's confidence interval.

    Returns
    -------
    SlopeFit
        From ``scipy.stats.linregress(log x, log y)``.
    """
    func = "slope_fit"
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{func}: x has {x.size} points but y has {y.size}; pass paired values")
    if x.size < 3:
        raise ValueError(f"{func}: got {x.size} points; need at least 3 for a slope with a confidence interval")
    for arr, name in ((x, "x"), (y, "y")):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{func}: {name} must be positive and finite for a log-log fit, got {arr!r}")
    if np.ptp(np.log(x)) == 0:
        raise ValueError(f"{func}: all x are equal ({x[0]!r}); a slope needs at least two distinct x")
    confidence = _check_probability(confidence, "confidence", func)
    fit = stats.linregress(np.log(x), np.log(y))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 2) * fit.stderr)
    return SlopeFit(float(fit.slope), float(fit.intercept), float(fit.stderr),
                    float(fit.slope) - half, float(fit.slope) + half, float(fit.rvalue), int(x.size))


def verdict_from_slope(slope, expected: float, tol: float) -> str:
    """Compare a fitted slope with the exponent a claim predicts.

    Parameters
    ----------
    slope : SlopeFit or float
        The fit (preferred: its confidence interval is used) or a bare slope.
    expected : float
        Predicted exponent, e.g. ``-0.5`` for error ~ m^(-1/2).
    tol : float
        Accepted distance between the slope and ``expected``.

    Returns
    -------
    str
        ``"holds"`` when ``|slope - expected| <= tol``. Otherwise, for a :class:`SlopeFit`, ``"fails"`` when the
        confidence interval lies entirely outside ``[expected - tol, expected + tol]`` and ``"inconclusive"``
        when it overlaps that band (the data cannot tell); for a bare float, ``"fails"``.
    """
    if not (isinstance(tol, (int, float, np.integer, np.floating)) and tol >= 0):
        raise ValueError(f"verdict_from_slope: tol={tol!r} must be a non-negative number")
    value = slope.slope if isinstance(slope, SlopeFit) else float(slope)
    if not math.isfinite(value):
        return "inconclusive"
    if abs(value - expected) <= tol:
        return "holds"
    if isinstance(slope, SlopeFit):
        lo, hi = expected - tol, expected + tol
        return "fails" if slope.ci_high < lo or slope.ci_low > hi else "inconclusive"
    return "fails"


# --------------------------------------------------------------------------------------------------
# Figure data on disk


def _check_name(name: str, func: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{func}: name={name!r} must be letters, digits, '_', '.', '-' (it becomes a file name)")
    return name


def save_claim_data(name: str, data: Mapping[str, Any], results_dir) -> list[Path]:
    """Write a claim's figure data as ``<results_dir>/<name>.npz`` (arrays) and ``<name>.json`` (the rest).

    Parameters
    ----------
    name : str
        Claim name.
    data : mapping of str to array or JSON-able value
        ``numpy.ndarray`` values go to the ``.npz`` file; everything else (numbers, strings, lists, dicts)
        must be JSON-able and goes to the ``.json`` file.
    results_dir : str or path
        Created if missing.

    Returns
    -------
    list of Path
        The files written. Stale files of the same name from an earlier run are removed, so that
        :func:`load_claim_data` never mixes two runs.
    """
    func = "save_claim_data"
    _check_name(name, func)
    if not isinstance(data, Mapping):
        raise TypeError(f"{func}: data must be a dict of arrays and scalars, got {type(data).__name__}")
    arrays = {str(k): v for k, v in data.items() if isinstance(v, np.ndarray)}
    scalars = {str(k): v for k, v in data.items() if not isinstance(v, np.ndarray)}
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise TypeError(f"{func}: data[{key!r}] is an object array; store numeric arrays or lists")
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    npz, js = remove_claim_data(name, out)
    if arrays:
        np.savez(npz, **arrays)
        written.append(npz)
    if scalars:
        js.write_text(json.dumps(to_jsonable(scalars), indent=2, allow_nan=False) + "\n")
        written.append(js)
    return written


def remove_claim_data(name: str, results_dir) -> tuple[Path, Path]:
    """Delete ``<name>.npz`` and ``<name>.json`` from ``results_dir`` if present; return both paths.

    Used before a claim's new data is written, and for a claim that produced none this run (an error), so that
    a figure never shows the data of an earlier run as if it were current.
    """
    _check_name(name, "remove_claim_data")
    out = Path(results_dir)
    paths = (out / f"{name}.npz", out / f"{name}.json")
    for path in paths:
        path.unlink(missing_ok=True)
    return paths


def load_claim_data(name: str, results_dir) -> dict:
    """Read back what :func:`save_claim_data` wrote, as one dict (arrays and scalars together).

    Raises
    ------
    FileNotFoundError
        When neither ``<name>.npz`` nor ``<name>.json`` exists; run ``python -m proofs_checks --claims <name>``.
    """
    func = "load_claim_data"
    _check_name(name, func)
    out = Path(results_dir)
    npz, js = out / f"{name}.npz", out / f"{name}.json"
    if not npz.exists() and not js.exists():
        raise FileNotFoundError(
            f"{func}: no data for claim {name!r} in {out} (looked for {npz.name}, {js.name}); "
            f"run `python -m proofs_checks --claims {name} --results {out}` first"
        )
    data: dict = {}
    if js.exists():
        data.update(json.loads(js.read_text()))
    if npz.exists():
        with np.load(npz, allow_pickle=False) as f:
            data.update({k: f[k] for k in f.files})
    return data


def has_claim_data(name: str, results_dir) -> bool:
    """True when :func:`load_claim_data` would find data for ``name`` in ``results_dir``."""
    out = Path(results_dir)
    return (out / f"{name}.npz").exists() or (out / f"{name}.json").exists()


def summarize(value: Any, width: int = 48) -> str:
    """Short one-line text of a measured/expected value for tables (numbers with 4 significant digits)."""

    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        if isinstance(v, Mapping):
            return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple, np.ndarray)):
            return "[" + ", ".join(fmt(x) for x in list(v)[:6]) + (", ..." if len(v) > 6 else "") + "]"
        return str(v)

    text = " ".join(fmt(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"

