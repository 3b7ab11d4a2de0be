"""Calibrated unbiasedness tests: each detects a 2 % bias with probability >= 0.99 (issue 10, item 1).

Every randomized estimator and sampled product of the toolkit is unbiased on its randomized path (docs/math.md
§2.2, §3, §4): random sampling (plain and permuted), one table of the hashing-based estimator, one copy of CKNS,
the weighted exponential KDE built on plain random sampling (Algorithm 2), ``amm`` (Lemma 3.1), the sampled
residual of the practical KDEformer (Algorithm 3) and, in Algorithm 1, the row sums D~ and the sampled product.

Design (the same for every mean test). A trial is one independent estimate: a fresh seed per trial, and either a
fresh build or an estimator whose build is deterministic, or a statistic that is independent given a build that it
is conditionally unbiased on (tables of one HBE build, copies of one CKNS build, the sequences of one Algorithm 3
batch given its sampling distribution). Its relative error ``estimate / truth - 1`` is averaged over ``N`` trials
and the test says "biased" when ``|mean| / (sd / sqrt N)`` exceeds Student's ``t_{1 - ALPHA/2, N-1}``
(:func:`proofs_checks._verdicts.mean_bias_verdict`). ``N = trials_for_mean_bias(SD, 0.02, ALPHA)`` (at least 200)
where ``SD`` is the per-trial relative standard deviation measured on this instance (2-core CPU, 2026-12-01)
times a 1.25 margin; the test also requires the observed sd to stay below ``SD`` (with N >= 200 the sd estimate
is within a few % of the truth, so this adds a negligible false-fail probability), so the stated power is the
power it had. Three further tests are chi-square goodness-of-fit tests of a sampling distribution at level ALPHA;
two are deterministic (a sampling distribution and a truncation rule against their formulas: no false-fail rate).

Error rates: ``ALPHA = FAMILY_ALPHA / N_STATISTICAL = 2e-5 / 21`` per statistical test, so the file's family
false-fail rate is at most 2e-5 (<= 3e-5) under the normal (chi-square) approximation; every trial is already an
average of many draws, so that approximation is close at the 1e-6 tail. Power: 0.99 against a relative bias of
0.02 in every mean test. Truths come from ``tests/naive.py`` (plain loops, no library code). Each test also
asserts that the randomized path sampled (kernel evaluations per query below n), so none passes by answering
exactly.
"""
import math
import warnings

import numpy as np
import pytest

import naive
from kdetheory.amm import amm
from kdetheory.attention.kdeformer import kdeformer
from kdetheory.attention.practical import kdeformer_practical
from kdetheory.kde import CKNSKDE, HashingBasedKDE, RandomSamplingKDE, WeightedExpKDE
from kdetheory.lsh.angular import AngularLSH
from proofs_checks._verdicts import mean_bias_verdict, trials_for_mean_bias

FAMILY_ALPHA = 2e-5  # this file's share of the suite's 1e-4 false-fail budget
N_STATISTICAL = 21  # mean tests and chi-square tests below
ALPHA = FAMILY_ALPHA / N_STATISTICAL  # per statistical test
BIAS = 0.02  # every test detects a relative bias of this size with probability POWER
POWER = 0.99
MARGIN = 1.25  # design sd = measured sd x MARGIN
#: at least this many trials, so that the observed sd (checked against the design's) is itself precise to ~5 %
N_MIN = 200


def _design(measured_sd):
    """(design sd, trial count) for a per-trial relative sd measured on the test's instance."""
    sd = MARGIN * measured_sd
    return sd, max(N_MIN, trials_for_mean_bias(sd, BIAS, ALPHA, POWER))


def _assert_unbiased(rel, sd, what):
    verdict = mean_bias_verdict(rel, ALPHA, BIAS, max_rel_sd=sd, power=POWER)
    assert verdict == "holds", (
        f"{what}: {verdict}; mean relative error {np.mean(rel):+.4g} over {len(rel)} trials "
        f"(sd {np.std(rel, ddof=1):.3g}, design sd {sd:.3g})")


def _seeds(name, n):
    """``n`` independent seeds for the test ``name`` (fixed, so a failure reproduces)."""
    return np.random.SeedSequence(list(name.encode())).spawn(n)


# ------------------------------------------------------------------------------------------------------------------
# Gaussian KDE estimators (Theorem 2.1's data structures)

N_POINTS, DIM = 2000, 4


def _kde_instance(n_queries=8):
    """Points in a blob, queries beside data points (densities about 0.14-0.40 at bandwidth 1)."""
    g = np.random.default_rng(20261201)
    X = 0.7 * g.standard_normal((N_POINTS, DIM))
    Y = X[:n_queries] + 0.1 * g.standard_normal((n_queries, DIM))
    return X, Y, naive.gaussian_kde(X, Y)


#: measured per-trial relative sd (one query's estimate from 64 samples), pooled over 16 builds
RS_SD = {False: 0.113, True: 0.113}
RS_SAMPLES = 64


#: builds whose trials are pooled: a permuted copy is one shuffle, and the variance given the shuffle varies with it
BUILDS = 16


@pytest.mark.parametrize("permuted", [False, True], ids=["plain", "permuted"])
def test_random_sampling_unbiased(permuted):
    """RandomSamplingKDE with a plain mean of 64 samples. A trial is one query's estimate: the plain build is
    deterministic and the permuted one is unbiased for every fixed shuffle (each point lies in exactly s of the
    n blocks), so queries are independent given the build; trials are spread over 16 builds so that the pooled sd
    does not hang on one shuffle. False-fail rate ALPHA; power 0.99 against 2 %."""
    X, Y, mu = _kde_instance()
    sd, n_trials = _design(RS_SD[permuted])
    reps = -(-n_trials // (len(Y) * BUILDS))
    rel = []
    for build, query in zip(*[iter(_seeds(f"rs{permuted}", 2 * BUILDS))] * 2):
        est = RandomSamplingKDE(X, n_samples=RS_SAMPLES, n_groups=1, permuted=permuted, rng=build)
        res = est.query(np.repeat(Y, reps, axis=0), rng=query)
        assert np.all(res.kernel_evaluations < N_POINTS)  # sampled, never exact
        rel.append(np.asarray(res.estimate).reshape(len(Y), reps) / mu[:, None] - 1)
    _assert_unbiased(np.concatenate(rel, axis=None), sd, f"RandomSamplingKDE(permuted={permuted})")


def _hbe(X, form, backend, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one level tuned to density 0.1 (level_ratio 10 leaves a single guess), tables of a 160-point subsample
        return HashingBasedKDE(X, eps=0.5, delta=0.2, mu_min=0.1, level_ratio=10.0, variance_constant=4.0,
                               form=form, exact_fallback=False, rng=seed, backend=backend)


#: measured sd of one table's mean relative error over the 8 queries
HBE_SD = {"sample": 0.49, "bucket": 0.44}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("form", ["sample", "bucket"])
def test_hbe_samples_unbiased(form, backend):
    """HashingBasedKDE: one table's sample Z = (|B|/s) k(x, q) / p(x, q) is unbiased (CS17). A trial is one
    table: tables are drawn independently (hash, offsets, subsample), so R_t = mean_i Z_it / mu_i - 1 is i.i.d.
    over tables even though the 8 queries share them. Fresh builds are added until N tables are collected.
    False-fail rate ALPHA; power 0.99 against 2 %."""
    X, Y, mu = _kde_instance()
    sd, n_trials = _design(HBE_SD[form])
    rel, seeds = [], iter(_seeds(f"hbe{form}{backend}", 1000))
    while sum(len(r) for r in rel) < n_trials:
        est = _hbe(X, form, backend, next(seeds))
        level = est.levels[-1]
        assert not level.exact and level.size < N_POINTS  # tables of a subsample: never the exact sum
        Z = est.samples(Y, level=-1, rng=next(seeds))
        rel.append((Z / mu[:, None]).mean(axis=0) - 1)
    _assert_unbiased(np.concatenate(rel)[:n_trials], sd, f"HashingBasedKDE(form={form}, backend={backend})")


#: measured sd of one copy's mean relative error over the 32 queries
CKNS_SD = 0.37


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ckns_samples_unbiased(backend):
    """CKNSKDE: one copy (its shells' LSH tables or scans and the uniform outer sample) is unbiased. Copies are
    built independently, so a copy's mean relative error over the 32 queries is one trial.
    False-fail rate ALPHA; power 0.99 against 2 %."""
    X, Y, mu = _kde_instance(32)
    sd, n_trials = _design(CKNS_SD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = CKNSKDE(X, eps=0.5, delta=0.2, mu_min=0.1, n_copies=n_trials, n_groups=1, brute_force_max=50,
                      exact_fallback=False, rng=_seeds(f"ckns{backend}", 1)[0], backend=backend)
    Z = est.samples(Y, level=-1, rng=_seeds(f"ckns{backend}q", 1)[0])
    assert Z.shape[1] == n_trials
    _assert_unbiased((Z / mu[:, None]).mean(axis=0) - 1, sd, f"CKNSKDE(backend={backend})")


# ------------------------------------------------------------------------------------------------------------------
# Weighted exponential KDE (Definition 3.1, Algorithm 2)

#: measured per-query relative sd of the Algorithm 2 estimate, pooled over 16 builds (weight classes of random sampling)
WEXP_SD = 0.0100


def _wexp_instance():
    g = np.random.default_rng(7)
    X = 0.25 * g.standard_normal((1500, 3))
    X *= np.minimum(1.0, 0.5 / np.linalg.norm(X, axis=1))[:, None]  # inside the ball of radius 0.5
    v = np.exp(g.uniform(np.log(0.2), 0.0, size=1500))  # weights over a factor 5: about three classes
    Y = 0.2 * g.standard_normal((4, 3))
    Y *= np.minimum(1.0, 0.5 / np.linalg.norm(Y, axis=1))[:, None]
    return X, v, Y


def test_weighted_exp_kde_unbiased():
    """WeightedExpKDE with the random-sampling Gaussian KDE in every class: the reduction is an identity, each
    class estimate is a plain mean (delta = 0.9 gives one median-of-means group) and no class is truncated, so it
    is unbiased given each build; repeated queries are independent given the build (the class estimators' only
    build randomness is their shuffle). Trials are spread over 16 builds so that the pooled sd does not hang on
    one shuffle. False-fail rate ALPHA; power 0.99 against 2 %."""
    X, v, Y = _wexp_instance()
    truth = np.exp(naive.exp_kde_log(X, Y, v))
    sd, n_trials = _design(WEXP_SD)
    reps = -(-n_trials // (len(Y) * BUILDS))
    rel = []
    for seed in _seeds("wexp", BUILDS):
        est = WeightedExpKDE(X, v, eps=0.5, delta=0.9, estimator="sampling", diameter=1.0, rng=seed,
                             backend="numpy")
        assert est.n_classes >= 2
        res = est.query(np.repeat(Y, reps, axis=0))
        assert np.all(res.classes_used == est.n_classes) and np.all(res.exact_fallbacks == 0)
        assert np.all(res.kernel_evaluations < len(X))  # sampled in every class
        rel.append(np.asarray(res.estimate).reshape(len(Y), reps) / truth[:, None] - 1)
    _assert_unbiased(np.concatenate(rel, axis=None), sd, "WeightedExpKDE(estimator='sampling')")


def test_weighted_exp_truncates_only_below_half_eps():
    """Algorithm 2 drops a class only when its total weight is below (eps/2) W e^{-Delta^2/2}; a light class just
    above that budget (and below eps W e^{-Delta^2/2}) must be kept, so with the exact estimator the answer is
    exact. Deterministic: no false-fail rate."""
    eps, D = 0.2, 2.0
    heavy = np.array([[D, 0.0]])
    light = np.zeros((10, 2))  # at the query: each contributes its weight in full
    X = np.vstack([heavy, light])
    # w_j = v_j e^{||x_j||^2 / 2}: heavy w = 1, light w = 0.001 (class 2^-10 < w <= 2^-9, bound mass 10 * 2^-9)
    log_v = np.concatenate([[-D**2 / 2], np.full(10, math.log(0.001))])
    y = np.zeros((1, 2))
    # centre = x0 / 11, radius = 10 D / 11, so the diameter bound is D: budget (eps/2) e^{-2} = 0.0135 < 0.0195
    est = WeightedExpKDE(X, log_weights=log_v, eps=eps, estimator="exact")
    res = est.query(y)
    truth = np.exp(naive.exp_kde_log(X, y, np.exp(log_v)))
    np.testing.assert_allclose(np.asarray(res.estimate), truth, rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# Approximate matrix multiplication (Lemma 3.1)

#: measured sd of the relative error along X^T Y of one amm product (m = 40 of n = 500)
AMM_SD = 0.032


def test_amm_unbiased():
    """amm: E[(Pi X)^T (Pi Y)] = X^T Y. A trial is one call with a fresh seed; its statistic is the relative error
    along the truth, <P, X^T Y> / ||X^T Y||_F^2 - 1, which a multiplicative bias moves by the bias itself.
    False-fail rate ALPHA; power 0.99 against 2 %."""
    g = np.random.default_rng(3)
    X = g.standard_normal((500, 6)) * g.uniform(0.2, 2.0, (500, 1))
    Y = X[:, :5] + 0.5 * g.standard_normal((500, 5))
    truth = naive_product = np.array([[math.fsum(X[:, a] * Y[:, b]) for b in range(5)] for a in range(6)])
    sd, n_trials = _design(AMM_SD)
    rel = np.empty(n_trials)
    for t, seed in enumerate(_seeds("amm", n_trials)):
        res = amm(X, Y, n_samples=40, rng=seed)
        rel[t] = np.sum(np.asarray(res.product) * truth) / np.sum(truth * naive_product) - 1
    _assert_unbiased(rel, sd, "amm")


# ------------------------------------------------------------------------------------------------------------------
# Practical KDEformer (Algorithm 3): the sampled residual

PRACTICAL = dict(n=96, d=6, b=12, m=8, r=4)
#: measured sd of one sequence's residual relative error along the target, per sampling rule
PRACTICAL_SD = {"values": 0.187, "columns": 0.179, "uniform": 0.197}


def _practical_instance():
    g = np.random.default_rng(11)
    n, d = PRACTICAL["n"], PRACTICAL["d"]
    Q, K = 0.6 * g.standard_normal((n, d)), 0.6 * g.standard_normal((n, d))
    V = g.standard_normal((n, 3)) * g.uniform(0.2, 3.0, (n, 1))  # value norms over a factor 15
    lsh = AngularLSH(d, PRACTICAL["r"], rng=5)
    mask = naive.block_mask(Q, K, lsh, PRACTICAL["b"])
    A = np.exp(Q @ K.T)
    V1 = np.column_stack([V, np.ones(n)])
    return Q, K, V, V1, lsh, A, mask


def _residual_draws(Q, K, V, lsh, sampling, backend, n_trials, name, m):
    """Unshifted residuals (n_trials, n, d_v + 1): sequences of batched calls, independent samples each."""
    out, batch = [], 256
    for k, seed in enumerate(_seeds(name, -(-n_trials // batch))):
        T = min(batch, n_trials - k * batch)
        tiled = [np.broadcast_to(x, (T,) + x.shape) for x in (Q, K, V)]
        res = kdeformer_practical(*tiled, bucket_size=PRACTICAL["b"], n_samples=m, sampling=sampling,
                                  lsh=lsh, rng=seed, backend=backend)
        assert PRACTICAL["b"] + m < PRACTICAL["n"]  # entries computed per query: below the n of exact
        out.append(np.asarray(res.residual) * np.exp(np.asarray(res.log_shift))[..., None])
    return np.concatenate(out)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("sampling", ["values", "columns", "uniform"])
def test_practical_residual_unbiased(sampling, backend):
    """kdeformer_practical's residual est(A_res [V,1]) = sum_s [block(i) != block(j_s)] A_ij [v_j,1] / (m p_j) is
    unbiased for (A o (1 - M)) [V,1] for any p > 0, M the block mask (built in plain loops, tests/naive.py). A
    trial is one sequence of a batch: the hash is fixed, samples are independent per sequence; for "columns" the
    distribution p is shared by a batch but the estimate is unbiased given p. Statistic: relative error along the
    target. False-fail rate ALPHA; power 0.99 against 2 %."""
    Q, K, V, V1, lsh, A, mask = _practical_instance()
    target = (A * ~mask) @ V1
    sd, n_trials = _design(PRACTICAL_SD[sampling])
    draws = _residual_draws(Q, K, V, lsh, sampling, backend, n_trials, f"prac{sampling}{backend}", PRACTICAL["m"])
    rel = np.einsum("tij,ij->t", draws, target) / np.sum(target * target) - 1
    _assert_unbiased(rel, sd, f"kdeformer_practical residual (sampling={sampling}, backend={backend})")


CHI2_TRIALS = 10_000


@pytest.mark.parametrize("sampling", ["values", "columns", "uniform"])
def test_practical_sampling_distribution(sampling):
    """The residual's sampling distribution is the documented one (docs/math.md §6.2): "values" is the authors'
    p_j ~ ||[v_j,1]||_2 / sigma_max([V,1])^2 + 1/n, "columns" Lemma 3.1's (c_j / sum c + ||[v_j,1]||^2 /
    ||[V,1]||_F^2) / 2 with c_j the squared column norms of D^-1 A_res, "uniform" 1/n. One query, so the column
    norms the library estimates from sampled queries are exact: c_j = [block(q) != block(j)] A_qj^2 / D^2. With one
    sample the residual's ones column is s = [J unmasked] A_qJ / p_J, so every nonzero s must be one of the atoms
    A_qj / p_j (another p, or a scaled weight, gives values off the atoms: deterministic) and the frequencies must
    fit p (chi-square, masked keys pooled; false-fail rate ALPHA, power ~1 against the squared-norm rule)."""
    from scipy import stats

    Q, K, V, V1, lsh, A, _ = _practical_instance()
    q = Q[:1]
    mask = naive.block_mask(q, K, lsh, PRACTICAL["b"])[0]
    a = A[0] * ~mask  # the query's residual row of A
    n = len(V1)
    sq = (V1 * V1).sum(axis=1)
    if sampling == "values":
        weights = np.sqrt(sq) / np.linalg.norm(V1, 2) ** 2 + 1.0 / n
    elif sampling == "columns":
        weights = (a * a) / np.sum(a * a) + sq / sq.sum()
    else:
        weights = np.ones(n)
    p = weights / weights.sum()
    draws = _residual_draws(q, K, V, lsh, sampling, "numpy", CHI2_TRIALS, f"dist{sampling}", 1)
    s = draws[:, 0, -1]
    live = np.flatnonzero(~mask)
    atoms = a[live] / p[live]
    hit = s != 0
    j = np.abs(s[hit, None] - atoms[None, :]).argmin(axis=1)
    np.testing.assert_allclose(s[hit], atoms[j], rtol=1e-9, err_msg=f"values off the atoms A_qj / p_j ({sampling})")
    counts = np.append(np.bincount(j, minlength=live.size), np.sum(~hit))  # masked keys pooled
    expected = CHI2_TRIALS * np.append(p[live], p[mask].sum())
    assert expected.min() >= 5  # the chi-square approximation's usual condition
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert stats.chi2.sf(chi2, counts.size - 1) > ALPHA, f"frequencies do not fit p: chi2 = {chi2:.1f}"


# ------------------------------------------------------------------------------------------------------------------
# Algorithm 1 (theory KDEformer): D~, the sampling distribution and the output


def _stage_kernel_evaluations(cost, stage):
    """Kernel evaluations of one stage of Algorithm 1's cost record (an AttentionCost or a dict of stages)."""
    if isinstance(cost, dict):
        return cost[stage]["kernel_evaluations"]
    (found,) = [st for st in cost.stages if st.name == stage]
    return found.kernel_evaluations


#: measured per-call relative sd of D~ for one query (one weight class of random sampling)
ROWS_SD = 0.0032


def test_kdeformer_row_sums_unbiased():
    """Algorithm 1 step 1: D~ = WEXPKDE(K, Q, 1) with random sampling. Keys on a sphere form one weight class, one
    query with delta = 0.99 gives one median-of-means group, so D~ is a plain mean of kernel samples: unbiased. A
    trial is one call with a fresh seed. False-fail rate ALPHA; power 0.99 against 2 %."""
    g = np.random.default_rng(5)
    K = g.standard_normal((4000, 4))
    K *= 0.5 / np.linalg.norm(K, axis=1, keepdims=True)
    q = 0.3 * K[:1] + 0.05 * g.standard_normal((1, 4))
    V = g.standard_normal((4000, 2))
    truth = math.exp(naive.exp_kde_log(K, q)[0])
    sd, n_trials = _design(ROWS_SD)
    rel = np.empty(n_trials)
    for t, seed in enumerate(_seeds("rows", n_trials)):
        res = kdeformer(q, K, V, eps=0.9, delta=0.99, n_samples=8, kde="sampling", rng=seed, backend="numpy")
        assert _stage_kernel_evaluations(res.cost, "row_sums_kde") < len(K)  # the row stage sampled
        rel[t] = math.exp(float(np.asarray(res.log_row_sums)[0])) / truth - 1
    _assert_unbiased(rel, sd, "kdeformer row sums D~")


def _alg1_instance():
    g = np.random.default_rng(9)
    Q, K = 0.5 * g.standard_normal((48, 5)), 0.5 * g.standard_normal((160, 5))
    # a common offset gives the attention output a norm comparable to one sample's spread
    V = 2.0 + g.standard_normal((160, 3)) * g.uniform(0.3, 1.5, (160, 1))
    return Q, K, V


def test_kdeformer_probabilities_follow_lemma_3_1():
    """Algorithm 1 steps 2-3 with exact KDEs: p_j = (||D^-1 A e_j||^2 / ||D^-1 A||_F^2 + ||v_j||^2 / ||V||_F^2) / 2.
    Deterministic: no false-fail rate."""
    Q, K, V = _alg1_instance()
    res = kdeformer(Q, K, V, eps=0.5, n_samples=32, kde="exact", rng=0, backend="numpy")
    P = naive.softmax_matrix(Q, K)  # D^-1 A
    col = (P * P).sum(axis=0)
    v_sq = (V * V).sum(axis=1)
    expected = 0.5 * (col / col.sum() + v_sq / v_sq.sum())
    np.testing.assert_allclose(np.asarray(res.probabilities), expected, rtol=1e-9)


#: measured per-call relative sd of the output along exact attention (m = 32 of 160 keys, D~ exact)
OUTPUT_SD = 0.041


def test_kdeformer_output_unbiased():
    """Algorithm 1 step 4 with exact KDEs (D~ = D): D^-1 A Pi^T Pi V is unbiased for D^-1 A V. A trial is one call
    with a fresh seed; its statistic is the relative error along exact attention.
    False-fail rate ALPHA; power 0.99 against 2 %."""
    Q, K, V = _alg1_instance()
    att = naive.attention(Q, K, V)
    sd, n_trials = _design(OUTPUT_SD)
    rel = np.empty(n_trials)
    for t, seed in enumerate(_seeds("alg1out", n_trials)):
        res = kdeformer(Q, K, V, eps=0.5, n_samples=32, kde="exact", rng=seed, backend="numpy")
        assert np.unique(res.indices).size < len(K)  # sampled keys: fewer than the n_k of exact attention
        rel[t] = np.sum(np.asarray(res.output) * att) / np.sum(att * att) - 1
    _assert_unbiased(rel, sd, "kdeformer output")
