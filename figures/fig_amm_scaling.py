"""Lemma 3.1: AMM error versus the number of samples m, with the fitted line and the m^(-1/2)
reference. Data: claim ``lemma_3_1_amm_scaling`` (proofs_checks/lemma_3_1_amm.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "lemma_3_1_amm_scaling"
CLAIMS = ("lemma_3_1_amm_scaling",)


def make(results_dir, outdir):
    data = results.load("lemma_3_1_amm_scaling", results_dir)
    m, errors = np.asarray(data["m"], float), np.asarray(data["errors"], float)
    _style.apply()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    q25, med, q75 = np.percentile(errors, [25, 50, 75], axis=1)
    ax.fill_between(m, q25, q75, alpha=0.25, color=_style.color_for("AMM"), label="interquartile range")
    ax.loglog(m, med, "o-", color=_style.color_for("AMM"), label=f"median error (slope {float(data['slope']):.3f})")
    s = float(data["srank_x"]) + float(data["srank_y"])
    ax.loglog(m, np.sqrt(s / m), "k--", label=r"$\sqrt{(\mathrm{srank}\,X + \mathrm{srank}\,Y)/m}$")
    ax.set_xlabel("samples m")
    ax.set_ylabel(r"$\|X^T\Pi^T\Pi Y - X^TY\|_2 / (\|X\|_2\|Y\|_2)$")
    ax.set_title(f"Lemma 3.1 on {data['label']}", fontsize=9)
    ax.legend(fontsize=8)
    return _style.save(fig, NAME, outdir)
