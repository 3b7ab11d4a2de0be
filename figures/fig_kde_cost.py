"""Theorem 2.1: per-query work of each KDE estimator at mean relative error <= 0.1 against 1/mu, with the fitted
tau lines (claim ``theorem_2_1_cost_exponent``, proofs_checks/theorem_2_1_kde.py); second panel, when its data
exists, the per-sample relative variance against mu (claim ``hbe_variance_vs_density``, proofs_checks/hbe_claims.py).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "theorem_2_1_kde_cost"
CLAIMS = ("theorem_2_1_cost_exponent",)
_COLOR = {"RS": "Random sampling", "RSP": "Random sampling", "HBE": "HBE", "CKNS": "CKNS"}


def _cost_panel(ax, data):
    inv = 1.0 / np.asarray(data["mu"], float)
    n = float(data["n"])
    for name in data["estimators"]:
        work = np.asarray(data[f"{name}_work"], float)
        color = _style.color_for(_COLOR.get(name, name))
        style = "s--" if name == "RSP" else "o-"
        label = name
        if f"{name}_fit" in data:
            slope, intercept = np.asarray(data[f"{name}_fit"], float)
            ax.loglog(inv, np.exp(intercept) * inv**slope, ":", color=color, lw=1)
            label = f"{name} (tau {slope:.2f})"
        ax.loglog(inv, work, style, color=color, label=label, alpha=0.6 if name == "RSP" else 1.0)
    ax.axhline(n, color=_style.color_for("exact"), lw=1, ls="-.", label=f"exact (n = {int(n)})")
    ax.set_xlabel(r"$1/\mu$")
    ax.set_ylabel("kernel + hash evaluations per query")
    ax.set_title("work at mean relative error $\\leq$ 0.1 (dotted: fits)", fontsize=10)
    ax.legend(fontsize=8)


def _variance_panel(ax, data):
    mu = np.asarray(data["mu"], float)
    for key, name in (("hbe", "HBE"), ("rs", "Random sampling")):
        color = _style.color_for(name)
        slope, intercept = np.asarray(data[f"{key}_fit"], float)
        ax.loglog(mu, np.asarray(data[key], float), "o-", color=color, label=f"{name} (exponent {slope:.2f})")
        ax.loglog(mu, np.exp(intercept) * (1 / mu) ** slope, ":", color=color, lw=1)
    ax.loglog(mu, 1 / mu, "k--", lw=1, label=r"$1/\mu$")
    ax.set_xlabel(r"$\mu$")
    ax.set_ylabel(r"$E[Z^2]/\mu^2$ per sample")
    ax.set_title("relative variance (HBE level tuned to $\\mu$)", fontsize=10)
    ax.legend(fontsize=8)


def make(results_dir, outdir):
    data = results.load("theorem_2_1_cost_exponent", results_dir)
    variance = results.available("hbe_variance_vs_density", results_dir)
    _style.apply()
    fig, axes = plt.subplots(1, 2 if variance else 1, figsize=(11, 4.2) if variance else (5.8, 4.2))
    axes = np.atleast_1d(axes)
    _cost_panel(axes[0], data)
    if variance:
        _variance_panel(axes[1], results.load("hbe_variance_vs_density", results_dir))
    fig.suptitle("Theorem 2.1: KDE cost versus density (clustered synthetic data)", fontsize=11)
    return _style.save(fig, NAME, outdir)
