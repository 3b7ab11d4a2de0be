"""Mutation check: does the test suite (and do the claims) notice when the mathematics is broken?

``python -m proofs_checks.mutants`` copies ``kdetheory/``, ``proofs_checks/``, ``benchmarks/``, ``figures/``,
``tests/`` and ``pyproject.toml`` to a temporary folder, applies ONE source-level mutant (an exact search -> replace
edit of one file), runs the mutant's pytest selection there (``PYTHONPATH`` and the working folder point at the
copy, so the mutated code is what the tests import) and, with ``--claims``, the claims named with it; then it
prints a table: mutant, applies, caught by tests (which), claim verdicts. A mutant whose search string no longer
occurs exactly once in the source is reported as "does not apply" (the code moved: re-anchor the string), never
silently skipped.

Each mutant is a semantic error a reviewer would expect the checks to catch (issue 10): a 2-5 % bias in every
estimator and sampled product, wrong sampling distributions, the authors' Gray order, a missing max-shift, an
off-by-one block boundary, truncation at eps instead of eps/2, Algorithm 1 without its column norms.
``tests/test_mutants.py`` checks that every search string applies (fast) and that every mutant is caught
(``-m slow``).

Usage::

    python -m proofs_checks.mutants                  # every mutant, tests only
    python -m proofs_checks.mutants --claims         # also run the claims named with each mutant (quick size)
    python -m proofs_checks.mutants hbe_bias amm_bias  # a selection
    python -m proofs_checks.mutants --check          # only check that every search string applies
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["Mutant", "MUTANTS", "ROOT", "apply_count", "run_mutant", "main"]

ROOT = Path(__file__).resolve().parent.parent
#: what a mutated copy needs: the package, the claims, the benchmarks and figures they import, the tests, their config
COPIED = ("kdetheory", "proofs_checks", "benchmarks", "figures", "tests", "pyproject.toml")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One source-level mutant.

    Attributes
    ----------
    name : str
        Short identifier.
    description : str
        The semantic error in words.
    path : str
        File to edit, relative to the repository root.
    search, replace : str
        The exact text to find (it must occur exactly once) and its replacement.
    tests : tuple of str
        pytest node ids or files expected to catch it.
    claims : tuple of str
        ``module:SPEC`` of claims expected to notice it (run with ``--claims``, quick size).
    """

    name: str
    description: str
    path: str
    search: str
    replace: str
    tests: tuple
    claims: tuple = ()


UNBIASED = "tests/test_unbiased.py"
PRACTICAL = "tests/test_practical.py"
CLAIMS_PRACTICAL = "tests/test_claims_practical.py"

MUTANTS = (
    Mutant("rs_bias", "RandomSamplingKDE estimates x 1.03 (fixed-size sizing, plain and permuted)",
           "kdetheory/kde/sampling.py",
           "        est = np.concatenate([to_numpy(median_of_means(",
           "        est = 1.03 * np.concatenate([to_numpy(median_of_means(",
           (f"{UNBIASED}::test_random_sampling_unbiased",),
           ("proofs_checks.theorem_2_1_kde:RELATIVE_ERROR",)),
    Mutant("rsp_bias", "RandomSamplingKDE permuted blocks: kernel values x 1.03",
           "kdetheory/kde/sampling.py",
           "        out[i] = wp[rows] * xp.exp(-r2)\n",
           "        out[i] = 1.03 * wp[rows] * xp.exp(-r2)\n",
           (f"{UNBIASED}::test_random_sampling_unbiased",)),
    Mutant("hbe_bias", "HashingBasedKDE per-table samples x 1.05 (both forms, every backend)",
           "kdetheory/kde/hbe.py",
           "            Z[r0:r1], kev[r0:r1] = kernel(self._Xh, Yh[sel_x], weights, level, codes, u, t0)\n",
           "            Z[r0:r1], kev[r0:r1] = kernel(self._Xh, Yh[sel_x], weights, level, codes, u, t0)\n"
           "            Z[r0:r1] *= 1.05\n",
           (f"{UNBIASED}::test_hbe_samples_unbiased",),
           ("proofs_checks.hbe_claims:UNBIASED",)),
    Mutant("ckns_bias", "CKNSKDE shell contributions x 1.05",
           "kdetheory/kde/ckns.py",
           "                Z[:, c] += z\n",
           "                Z[:, c] += 1.05 * z\n",
           (f"{UNBIASED}::test_ckns_samples_unbiased", "tests/test_ckns_adaptive.py::test_adaptive_copies_unbiased")),
    Mutant("wexp_bias", "WeightedExpKDE class terms x 1.03",
           "kdetheory/kde/weighted_exp.py",
           "                terms[c, rows] = cls.log_W + math.log(cls.size) + np.log(mu)\n",
           "                terms[c, rows] = cls.log_W + math.log(cls.size) + np.log(1.03 * mu)\n",
           (f"{UNBIASED}::test_weighted_exp_kde_unbiased",),
           ("proofs_checks.theorem_3_3_wexpkde:SPEC",)),
    Mutant("wexp_truncation_eps", "WeightedExpKDE truncates classes at eps instead of eps/2",
           "kdetheory/kde/weighted_exp.py",
           "        budget = math.log(self.eps / 2) + self.log_w_max - 0.5 * diam**2\n",
           "        budget = math.log(self.eps) + self.log_w_max - 0.5 * diam**2\n",
           (f"{UNBIASED}::test_weighted_exp_truncates_only_below_half_eps",)),
    Mutant("amm_bias", "amm: sampling weights 1/(m p) x 1.05 (product x 1.05)",
           "kdetheory/amm.py",
           "        return 1.0 / (self.n_samples * self.probabilities[self.indices])\n",
           "        return 1.05 / (self.n_samples * self.probabilities[self.indices])\n",
           (f"{UNBIASED}::test_amm_unbiased",),
           ("proofs_checks.lemma_3_1_amm:GUARANTEE",)),
    Mutant("practical_residual_bias", "Algorithm 3 residual weights 1/(m p) x 1.05",
           "kdetheory/attention/practical.py",
           "        log_w = (-xp.log(m * xp.take_along_axis(p, pos, axis=-1))).astype(Q.dtype)\n",
           "        log_w = (np.log(1.05) - xp.log(m * xp.take_along_axis(p, pos, axis=-1))).astype(Q.dtype)\n",
           (f"{UNBIASED}::test_practical_residual_unbiased", f"{UNBIASED}::test_practical_sampling_distribution"),
           ("proofs_checks.practical_estimator:RESIDUAL_UNBIASED",)),
    Mutant("practical_authors_squared", "Algorithm 3 'values' rule with squared norms ||[v,1]||^2",
           "kdetheory/attention/practical.py",
           "        p = xp.sqrt(sq) / sigma2[:, None] + 1.0 / n_k\n",
           "        p = sq / sigma2[:, None] + 1.0 / n_k\n",
           (f"{UNBIASED}::test_practical_sampling_distribution",)),
    Mutant("practical_columns_uniform", "Algorithm 3 'columns' rule samples uniformly instead of by column norms",
           "kdetheory/attention/practical.py",
           "    return to_namespace(np.stack([sampling_probabilities(c[b], sq[b]) for b in range(B)]), xp)\n",
           "    return xp.full((B, n_k), 1.0 / n_k)\n",
           (f"{UNBIASED}::test_practical_sampling_distribution",)),
    Mutant("alg1_dtilde_bias", "Algorithm 1: D~ x 1.05",
           "kdetheory/attention/kdeformer.py",
           "    log_d = to_numpy(rows.log_estimate).astype(np.float64)\n",
           "    log_d = to_numpy(rows.log_estimate).astype(np.float64) + np.log(1.05)\n",
           (f"{UNBIASED}::test_kdeformer_row_sums_unbiased", f"{UNBIASED}::test_kdeformer_output_unbiased"),
           ("proofs_checks.theorem_3_4_attention:SPEC",)),
    Mutant("alg1_no_column_norms", "Algorithm 1 ignores the column norms (p from the value norms only)",
           "kdetheory/attention/kdeformer.py",
           "    p = to_numpy(sampling_probabilities(c, v_sq))\n",
           "    p = to_numpy(sampling_probabilities(np.ones_like(c), v_sq))\n",
           (f"{UNBIASED}::test_kdeformer_probabilities_follow_lemma_3_1",),
           ("proofs_checks.theorem_3_4_attention:SPEC",)),
    Mutant("alg1_uniform", "Algorithm 1 samples keys uniformly instead of by column and value norms",
           "kdetheory/attention/kdeformer.py",
           "    p = to_numpy(sampling_probabilities(c, v_sq))\n",
           "    p = np.full(c.shape, 1.0 / c.size)\n",
           (f"{UNBIASED}::test_kdeformer_probabilities_follow_lemma_3_1",)),
    Mutant("gray_authors_order", "angular LSH: 'gray' ranks buckets in the authors' order",
           "kdetheory/lsh/angular.py",
           '    return inverse_gray_code(ids, r) if order == "gray" else gray_code(ids)\n',
           '    return gray_code(ids) if order == "gray" else inverse_gray_code(ids, r)\n',
           (f"{CLAIMS_PRACTICAL}::test_block_mask_matches_library_sparse_part",
            f"{PRACTICAL}::test_sparse_part_is_exact_block_restriction"),
           ("proofs_checks.practical_estimator:SPARSE_EXACT",)),
    Mutant("block_off_by_one_queries", "Algorithm 3 query blocks: each block's first query joins the previous block",
           "kdetheory/attention/_blocks.py",
           "        q_start = (k_start * n_q) // n_k\n",
           "        q_start = np.minimum((k_start * n_q) // n_k + 1, n_q)\n        q_start[0] = 0\n",
           (f"{CLAIMS_PRACTICAL}::test_block_mask_matches_library_sparse_part", PRACTICAL),
           ("proofs_checks.practical_estimator:SPARSE_EXACT",)),
    Mutant("block_off_by_one_keys", "Algorithm 3 key blocks: every boundary after the first one key later",
           "kdetheory/attention/_blocks.py",
           "        k_start = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * bucket_size, n_k)\n",
           "        k_start = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * bucket_size + 1, n_k)\n"
           "        k_start[0] = 0\n",
           (f"{CLAIMS_PRACTICAL}::test_block_mask_matches_library_sparse_part", PRACTICAL),
           ("proofs_checks.practical_estimator:SPARSE_EXACT",)),
    Mutant("no_max_shift_numpy", "online softmax, NumPy/CuPy path: exponentials not max-shifted",
           "kdetheory/_stream.py",
           "    new = xp.maximum(mx, logits.max(axis=-1))\n",
           "    new = xp.zeros_like(mx)\n",
           ("tests/test_exact.py::test_online_softmax_matches_loops", PRACTICAL)),
    Mutant("no_max_shift_numba", "online softmax, numba path: exponentials not max-shifted",
           "kdetheory/_numba/_stream.py",
           "    if logit > run_max:\n",
           "    run_max = 0.0\n    if False:\n",
           ("tests/test_exact.py::test_online_softmax_matches_loops", PRACTICAL)),
)


# --------------------------------------------------------------------------------------------------------------


def apply_count(mutant: Mutant, root: Path = ROOT) -> int:
    """How many times the mutant's search string occurs in its file under ``root`` (1 means it applies)."""
    path = Path(root) / mutant.path
    if not path.is_file():
        return 0
    return path.read_text().count(mutant.search)


def _copy_tree(dest: Path, root: Path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.nbi", "*.nbc")
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)


def _env(dest: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(dest) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NUMBA_CACHE_DIR"] = str(dest / ".numba_cache")
    env.pop("PYTEST_ADDOPTS", None)
    return env


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_mutant(mutant: Mutant, *, root: Path = ROOT, claims: bool = False, timeout: float = 1800,
               mutate: bool = True) -> dict:
    """Apply one mutant to a temporary copy and run its tests (and claims).

    Parameters
    ----------
    mutant : Mutant
    root : Path
        Repository root to copy.
    claims : bool
        Also run the mutant's claims at the quick size.
    timeout : float
        Seconds allowed for the pytest run.
    mutate : bool
        False runs the same selection on the unmutated copy (the baseline, which must pass).

    Returns
    -------
    dict
        ``applies`` (bool), ``count`` (occurrences of the search string), ``caught`` (bool or None when it does not
        apply), ``failed`` (test ids that failed), ``returncode``, ``claims`` (name -> verdict), ``seconds``.
    """
    if not isinstance(mutant, Mutant):
        raise TypeError(f"run_mutant: mutant={mutant!r} must be a Mutant from MUTANTS")
    root = Path(root)
    count = apply_count(mutant, root)
    record = {"name": mutant.name, "applies": count == 1, "count": count, "caught": None, "failed": [],
              "returncode": None, "claims": {}, "seconds": 0.0}
    if count != 1:
        return record
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant_{mutant.name}_") as tmp:
        dest = Path(tmp)
        _copy_tree(dest, root)
        if mutate:
            target = dest / mutant.path
            target.write_text(target.read_text().replace(mutant.search, mutant.replace, 1))
        env = _env(dest)
        # The copy must be what Python imports, not the installed checkout.
        probe = subprocess.run([sys.executable, "-c", "import kdetheory, proofs_checks; "
                                "print(kdetheory.__file__); print(proofs_checks.__file__)"],
                               cwd=dest, env=env, capture_output=True, text=True)
        if probe.returncode != 0 or any(not line.startswith(str(dest)) for line in probe.stdout.split()):
            raise RuntimeError(f"run_mutant: the copy in {dest} is not what Python imports:\n"
                               f"{probe.stdout}{probe.stderr}")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "slow or not slow",
               *mutant.tests]
        try:
            proc = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout)
            out = proc.stdout + proc.stderr
            record["returncode"] = proc.returncode
            record["failed"] = _FAILED.findall(out)
            # 1: tests failed; 2-4: errors, interrupted, usage; 5: nothing collected (a wrong selection, not a catch)
            record["caught"] = proc.returncode in (1, 2, 3)
            record["output_tail"] = out[-3000:]
        except subprocess.TimeoutExpired:
            record["returncode"] = "timeout"
            record["caught"] = False
        if claims:
            for spec in mutant.claims:
                module, attr = spec.split(":")
                code = (f"import importlib; r = getattr(importlib.import_module({module!r}), {attr!r}).run('quick'); "
                        "print('VERDICT', r.verdict)")
                proc = subprocess.run([sys.executable, "-c", code], cwd=dest, env=env, capture_output=True,
                                      text=True, timeout=timeout)
                found = re.findall(r"^VERDICT (\S+)", proc.stdout, re.MULTILINE)
                record["claims"][spec] = found[-1] if found else f"error (exit {proc.returncode})"
    record["seconds"] = time.perf_counter() - start
    return record


def _table(records, baseline=False) -> str:
    caught_header = "baseline tests fail" if baseline else "caught by tests"
    lines = [f"| mutant | applies | {caught_header} | failing tests | claims (quick) | s |",
             "|---|---|---|---|---|---|"]
    for r in records:
        if not r["applies"]:
            applies = f"does not apply (search string found {r['count']} times: re-anchor it)"
            lines.append(f"| {r['name']} | {applies} | - | - | - | - |")
            continue
        caught = {True: "yes", False: "NO", None: "-"}[r["caught"]]
        failed = ", ".join(f.split("::")[-1] for f in r["failed"][:3]) or "-"
        claims = ", ".join(f"{k.split(':')[-1]}: {v}" for k, v in r["claims"].items()) or "-"
        lines.append(f"| {r['name']} | yes | {caught} | {failed} | {claims} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command line: run the mutants and print the table; exit 1 if any mutant applies and is not caught,
    2 if any does not apply."""
    parser = argparse.ArgumentParser(prog="python -m proofs_checks.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--claims", action="store_true", help="also run each mutant's claims (quick size)")
    parser.add_argument("--check", action="store_true", help="only check that every search string applies")
    parser.add_argument("--baseline", action="store_true", help="run the selections on the unmutated copy")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository (or snapshot) to copy (default: this one)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutants {unknown}; choose from {sorted(known)}")
    chosen = [known[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.name:32s} {m.path:36s} {m.description}")
        return 0
    if args.check:
        bad = [(m.name, apply_count(m, args.root)) for m in chosen if apply_count(m, args.root) != 1]
        for name, count in bad:
            print(f"{name}: does not apply (search string found {count} times)")
        print(f"{len(chosen) - len(bad)} of {len(chosen)} mutants apply")
        return 2 if bad else 0
    records = []
    for m in chosen:
        print(f"[mutants] {m.name} ...", file=sys.stderr, flush=True)
        records.append(run_mutant(m, root=args.root, claims=args.claims, mutate=not args.baseline))
    print(_table(records, baseline=args.baseline))
    if any(not r["applies"] for r in records):
        return 2
    if args.baseline:
        return 1 if any(r["caught"] for r in records) else 0
    return 1 if any(not r["caught"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
