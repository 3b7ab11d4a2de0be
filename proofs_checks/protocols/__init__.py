"""Experimental protocols shared by the claims and the benchmarks.

A claim and the benchmark that measures the same quantity at a larger size must run the same protocol, so the
protocol lives here, inside the installed package, and both import it: ``python -m proofs_checks`` then works from
any folder and on Dask workers, where the repository's ``benchmarks/`` scripts are not importable.

* :mod:`proofs_checks.protocols.kde`: the bandwidth rule and estimator factories of the Theorem 2.1 cost sweep
  (``benchmarks/kde.py``, ``theorem_2_1_cost_exponent``);
* :mod:`proofs_checks.protocols.budget`: the Figure 4 error-versus-budget sweep (``benchmarks/budget.py``,
  ``figure_4_budget``).
"""
