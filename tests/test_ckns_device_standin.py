"""Stand-in tests of the GPU-native CKNS copies (issue 14, item 3), run on the CPU.

``kdetheory._cupy._ckns`` is namespace generic, so its code path runs on NumPy arrays. An estimator whose
``_on_device`` is forced on with NumPy data must give the host reference's estimates and per-query kernel / hash
/ copy counts exactly (same seed, same draws: the host draws every random number for both paths), for both
sizings, weighted data, float64 and float32, with scanned and LSH shells; its LSH tables must equal the host
tables, its flattened scanned shells the host units, and it must hand the driver nothing larger than one value
per query (worst-case sizing). The same code on CuPy is tested in tests/gpu/test_ckns_gpu.py. No statistical
test here (all comparisons are exact).
"""

import numpy as np
import pytest
from standin_data import H, standin_instance

from kdetheory._cupy import _ckns, _hbe
from kdetheory.kde import CKNSKDE
from kdetheory.kde import ckns as ckns_module
from kdetheory.lsh.euclidean import BucketTables


class StandIn(CKNSKDE):
    """The device code path on NumPy arrays (``kdetheory._cupy._ckns`` run with ``xp = numpy``)."""

    _on_device = True


def _kw(sizing="worst_case", **kw):
    # brute_force_max=20: the inner shells of the deeper guesses are hashed, the outer ones scanned
    base = {"bandwidth": H, "eps": 0.5, "mu_min": 0.02, "brute_force_max": 20, "exact_fallback": False,
            "sizing": sizing, "backend": "numpy"}
    base["n_copies"] = 15 if sizing == "worst_case" else 60  # adaptive: the most copies a query reads
    base.update(kw)
    return base


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizing", ["worst_case", "adaptive"])
def test_standin_matches_host_reference(sizing, dtype):
    """Same seed, same answer: estimates, kernel / hash evaluations, copies read, levels and flags per query all
    equal the NumPy reference's (weighted data, so the coefficients w_x / (n pi_x) are exercised)."""
    X, Y, _ = standin_instance(dtype=dtype)
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    kw = _kw(sizing, weights=w)
    ref = CKNSKDE(X, rng=3, **kw).query(Y, rng=4)
    dev = StandIn(X, rng=3, **kw).query(Y, rng=4)
    assert dev.estimate.dtype == ref.estimate.dtype == dtype
    np.testing.assert_allclose(dev.estimate, ref.estimate, rtol=1e-12 if dtype == np.float64 else 1e-6)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert ref.hash_evaluations.any() and np.all(ref.samples > 0)  # copies answered, LSH shells among them


def test_standin_samples_match_host():
    """Every copy's value (``samples``) equals the host's, on the level with both scanned and LSH shells."""
    X, Y, _ = standin_instance()
    ref, dev = CKNSKDE(X, rng=8, **_kw()), StandIn(X, rng=8, **_kw())
    lev = ref.levels[-1]
    assert any(u.lsh for u in lev.copies[0]) and any(not u.lsh and u.S.size for u in lev.copies[0])
    np.testing.assert_allclose(dev.samples(Y, rng=9), ref.samples(Y, rng=9), rtol=1e-12)


def test_standin_structures_equal_host():
    """The device LSH tables equal the host ``BucketTables`` of the same build array by array, and the flattened
    scanned shells hold exactly the host units' subsamples, coefficients and shell bounds, copy by copy."""
    X, _, _ = standin_instance()
    ref, dev = CKNSKDE(X, rng=7, **_kw()), StandIn(X, rng=7, **_kw())
    n_lsh = 0
    for a, b in zip(ref.levels, dev.levels):
        if a.exact:
            continue
        sc = b.device
        assert isinstance(sc, _ckns.ScannedShells)
        for c, (ua, ub) in enumerate(zip(a.copies, b.copies)):
            scanned = [(s, u) for s, u in zip(a.shells, ua) if not u.lsh and u.S.size]
            sl = slice(sc.ptr[c], sc.ptr[c + 1])
            np.testing.assert_array_equal(sc.index[sl], np.concatenate([u.S for _, u in scanned] or [[]]))
            np.testing.assert_array_equal(sc.coef[sl], np.concatenate([u.coef for _, u in scanned] or [[]]))
            np.testing.assert_array_equal(sc.copy[sl], c)
            np.testing.assert_array_equal(sc.lo[sl], np.concatenate([[s.r2[0]] * u.S.size for s, u in scanned] or [[]]))
            for x, y in zip(ua, ub):
                assert x.lsh == y.lsh
                if not x.lsh:
                    continue
                n_lsh += 1
                assert isinstance(x.tables, BucketTables) and isinstance(y.tables, _hbe.DeviceBucketTables)
                for key in ("first", "last", "bucket_ptr", "bucket_mix", "bucket_key", "members"):
                    np.testing.assert_array_equal(getattr(y.tables, key), getattr(x.tables, key), err_msg=key)
                np.testing.assert_array_equal(y.coef_pos, x.coef_pos)
    assert n_lsh > 0


def test_standin_moves_only_per_query_vectors(monkeypatch):
    """Build and worst-case query of the device path hand the driver nothing larger than one value per query
    (the host path converts the whole (n, d) data and the (m, copies) samples: the check has teeth)."""
    X, Y, _ = standin_instance()
    sizes = []
    real = ckns_module.to_numpy

    def counted(a):
        sizes.append(int(np.size(a)))
        return real(a)

    monkeypatch.setattr(ckns_module, "to_numpy", counted)
    dev = StandIn(X, rng=2, **_kw())
    assert sizes == []  # nothing converted at build
    dev.query(Y, rng=3)
    assert sizes and max(sizes) <= Y.shape[0]
    sizes.clear()
    CKNSKDE(X, rng=2, **_kw()).query(Y, rng=3)
    assert max(sizes) > Y.shape[0]


def test_lsh_shell_counts_a_point_found_twice_once():
    """A point found in several tables is one kernel evaluation and one term (the dedupe of the device path),
    and a shell with no bucket hit gives zeros (no gather at all)."""
    X, Y, _ = standin_instance()
    est, ref = StandIn(X, rng=5, **_kw()), CKNSKDE(X, rng=5, **_kw())
    s = next(s for s, u in enumerate(est.levels[-1].copies[0]) if u.lsh)
    shell, unit = est.levels[-1].shells[s], est.levels[-1].copies[0][s]
    Yq = np.asarray(Y * est._scale, dtype=np.float64)
    codes = ckns_module.hash_points(Yq, unit.projections, unit.offsets)
    z, kev = _ckns._lsh_shell(est._Xh, Yq, shell, unit, codes, est.width)
    zr, kr = ckns_module._shell_numpy(ref._Xh, Yq, shell, ref.levels[-1].copies[0][s], codes, est.width)
    np.testing.assert_allclose(z, zr, rtol=1e-12)
    np.testing.assert_array_equal(kev, kr)
    bucket = unit.tables.lookup(codes)
    found = [set() for _ in range(Y.shape[0])]
    for t in range(bucket.shape[0]):
        for i in range(Y.shape[0]):
            if bucket[t, i] >= 0:
                found[i] |= set(unit.tables.members[unit.tables.first[bucket[t, i]]:unit.tables.last[bucket[t, i]]])
    np.testing.assert_array_equal(kev, [len(f) for f in found])
    far = np.full_like(codes, 10**9)  # keys no stored point has
    z0, k0 = _ckns._lsh_shell(est._Xh, Yq, shell, unit, far, est.width)
    assert not z0.any() and not k0.any()
