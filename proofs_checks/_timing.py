"""How long each claim takes at each size, so that a run can be planned before it starts.

``python -m proofs_checks --estimate [--size full] [--claims ...] [--jobs N]`` prints, per claim, the seconds of
its latest recorded run and the wall time of the whole selection on ``N`` workers. A claim's time comes, in
order of preference, from

1. the ``claims.json`` in the run's results folder (by default ``results/`` for quick, ``results/full/`` for
   full), i.e. the latest run of that claim there; else
2. :data:`RECORDED`, the times measured when the sizes were designed (machine and date in :data:`RECORDED_ON`).

The full size is designed to finish within :data:`FULL_BUDGET_S` on the 2-core CPU machine with two workers.
"""

from __future__ import annotations

import heapq
import json
import os
from pathlib import Path

from .results import default_folder

__all__ = ["FULL_BUDGET_S", "RECORDED", "RECORDED_ON", "plan", "makespan", "format_plan"]

#: The full size's design target: one hour of wall time on the 2-core CPU machine (issue 15).
FULL_BUDGET_S = 3600.0

#: size -> where the numbers of :data:`RECORDED` come from. They are CPU seconds, not wall seconds, because the CPU was
#: shared with other work when they were measured; on an idle machine one claim's wall time is about its CPU time.
RECORDED_ON: dict[str, str] = {
    size: f"CPU seconds (user + sys) of `python -m proofs_checks --size {size} --claims NAME --jobs 1`, one BLAS "
          "and numba thread, process start included, 2-core CPU machine, 2026-12-01"
    for size in ("quick", "full")
}

#: size -> claim name -> seconds of one run of the claim (one worker), as measured when the sizes were designed.
#: A claim missing here crashed in that measurement (its module was being changed) and has no time yet. The three
#: claims of issue 15 (corollary_3_4_runtime, theorem_3_4_attention, kde_runtime_vs_diameter: adaptive sizing added)
#: were re-measured on 2026-12-01 on a shared machine (quick at load average ~5, full at 10-15; CPU times read high
#: under load: the worst-case part of theorem_3_4_attention took 27-31 s against 9 s recorded earlier).
RECORDED: dict[str, dict[str, float]] = {
    "quick": {
        "theorem_2_1_cost_exponent": 11.8, "theorem_3_4_attention": 39.6, "hbe_unbiased": 7.6,
        "theorem_2_1_relative_error": 6.4, "hbe_variance_vs_density": 6.0, "figure_4_budget": 5.8,
        "practical_residual_unbiased": 5.7, "theorem_3_3_wexpkde": 5.7, "figure_2_stable_rank": 4.0,
        "corollary_3_4_runtime": 5.5, "lemma_3_1_amm_guarantee": 3.0, "claim_1_angular_lsh": 2.1,
        "lemma_3_1_amm_scaling": 1.9, "flop_ratios": 1.6, "practical_sparse_exact": 1.2,
        "kde_runtime_vs_diameter": 4.8, "e2lsh_collision_probability": 1.1, "theorem_3_2_composition": 0.9,
        "gray_code_adjacency": 0.8, "exp_gaussian_identity": 0.8, "softmax_row_stochastic": 0.8,
        "column_norm_formula": 0.7,
    },
    "full": {
        "practical_residual_unbiased": 292.6, "figure_4_budget": 188.9, "theorem_3_4_attention": 155.0,
        "theorem_3_2_composition": 91.7, "theorem_2_1_cost_exponent": 88.4, "corollary_3_4_runtime": 80.0,
        "theorem_2_1_relative_error": 66.2, "theorem_3_3_wexpkde": 38.8, "lemma_3_1_amm_scaling": 21.9,
        "figure_2_stable_rank": 15.0, "claim_1_angular_lsh": 14.7, "lemma_3_1_amm_guarantee": 14.3,
        "e2lsh_collision_probability": 8.4, "kde_runtime_vs_diameter": 17.2, "softmax_row_stochastic": 4.4,
        "exp_gaussian_identity": 2.7, "flop_ratios": 1.6, "practical_sparse_exact": 1.5, "column_norm_formula": 1.4,
        "gray_code_adjacency": 0.8,
    },
}


def _recorded_in(folder: Path) -> dict[str, float]:
    path = folder / "claims.json"
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    # an "error" row's time is how long the claim took to crash, not how long it takes
    return {r["name"]: float(r["elapsed_s"]) for r in records
            if isinstance(r, dict) and r.get("verdict") != "error" and "elapsed_s" in r}


def plan(names, size: str, jobs: int | None = None, folder=None) -> dict:
    """Expected seconds of each claim and of the whole run.

    Parameters
    ----------
    names : sequence of str
        The claims to run.
    size : {"quick", "full"}
    jobs : int, optional
        Parallel workers; default the CPU count.
    folder : str or path, optional
        The results folder whose ``claims.json`` holds earlier times at this size; default
        :func:`proofs_checks.results.default_folder` of ``size``.

    Returns
    -------
    dict
        ``{"size", "jobs", "claims": [(name, seconds or None, source)], "wall_s", "unknown": [names]}``;
        ``wall_s`` is the greedy longest-first schedule of the known times on ``jobs`` workers (a lower bound
        when some times are unknown).
    """
    if size not in RECORDED:
        raise ValueError(f"plan: size={size!r} is not valid; pass one of {tuple(RECORDED)}")
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"plan: jobs={jobs!r} must be a positive int")
    folder = default_folder(size) if folder is None else Path(folder)
    measured = _recorded_in(folder)
    rows = []
    for name in names:
        if name in measured:
            rows.append((name, measured[name], f"{folder / 'claims.json'}"))
        elif name in RECORDED[size]:
            rows.append((name, RECORDED[size][name], "recorded"))
        else:
            rows.append((name, None, "no record"))
    known = [t for _, t, _ in rows if t is not None]
    return {"size": size, "jobs": jobs, "claims": rows, "wall_s": makespan(known, jobs),
            "unknown": [n for n, t, _ in rows if t is None]}


def makespan(seconds, jobs: int) -> float:
    """Wall time of independent tasks on ``jobs`` workers, scheduled longest first (what a pool does when the
    longest tasks are submitted first; within 4/3 of the optimum)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"makespan: jobs={jobs!r} must be a positive int")
    if any(t < 0 for t in seconds):
        raise ValueError(f"makespan: seconds must be non-negative, got {list(seconds)!r}")
    loads = [0.0] * jobs
    for t in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + t)
    return max(loads)


def format_plan(p: dict) -> str:
    """The table printed by ``--estimate``."""
    lines = [f"size={p['size']}, {p['jobs']} worker(s)", "", f"{'claim':<32} {'seconds':>9}  source"]
    for name, seconds, source in sorted(p["claims"], key=lambda row: -(row[1] or 0)):
        lines.append(f"{name:<32} {'?' if seconds is None else f'{seconds:9.1f}':>9}  {source}")
    total = sum(t for _, t, _ in p["claims"] if t is not None)
    lines += ["", f"sum of claim times {total:.0f} s; expected wall time {p['wall_s']:.0f} s "
                  f"({p['wall_s'] / 60:.1f} min) on {p['jobs']} worker(s)"]
    if p["unknown"]:
        lines.append(f"no recorded time for: {', '.join(p['unknown'])} (not counted)")
    if p["size"] == "full":
        if p["wall_s"] > FULL_BUDGET_S:
            verdict = "OVER budget"
        elif p["unknown"]:
            verdict = "cannot tell: some times are unknown"
        else:
            verdict = "within budget"
        lines.append(f"design budget of the full size: {FULL_BUDGET_S / 60:.0f} min on the 2-core CPU machine "
                     f"({verdict})")
    for size, where in RECORDED_ON.items():
        if size == p["size"]:
            lines.append(f"recorded times: {where}")
    return "\n".join(lines)
