"""Figure 2: singular values of D^-1 A and of D^-1 A_res (LSH diagonal blocks removed), and the stable ranks per
MiniLM head. Data: claim ``figure_2_stable_rank`` (proofs_checks/figure_2_stable_rank.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "figure_2_stable_rank"
CLAIMS = ("figure_2_stable_rank",)


def _srank(s):
    return float(np.sum(s**2) / s[0] ** 2)


def _spectrum_panel(ax, s_full, s_res, title):
    full, res = _style.color_for("exact"), _style.color_for("kdeformer")
    k = np.arange(1, s_full.size + 1)
    ax.semilogy(k, s_full, "-", color=full, label=f"$D^{{-1}}A$ (srank {_srank(s_full):.2f})")
    ax.semilogy(k, s_res, "-", color=res, label=f"$D^{{-1}}A_{{res}}$ (srank {_srank(s_res):.2f})")
    ax.set_xscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel(r"singular value $\sigma_i$")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(max(1e-8, min(s_full[-1], s_res[-1]) * 0.5), None)
    ax.legend(fontsize=8)


def make(results_dir, outdir):
    data = results.load("figure_2_stable_rank", results_dir)
    real = "real_ratio" in data
    panels = [(f"sv_{k}", f"sv_res_{k}", f"synthetic {k}") for k in ("peaky", "flat")]
    if real:
        # The claim saved the heads with the lowest, median and highest srank ratio.
        roles = ("lowest ratio", "median ratio", "highest ratio")
        panels = [(f"sv_real{i}", f"sv_res_real{i}", f"{data[f'real{i}_label']} ({roles[i]})")
                  for i in range(3)] + panels
    _style.apply()
    ncols = 3 if real else 2
    fig, axes = plt.subplots(2 if real else 1, ncols, figsize=(4.4 * ncols, 3.9 * (2 if real else 1)))
    axes = np.atleast_1d(axes).ravel()
    for ax, (a, b, title) in zip(axes, panels):
        _spectrum_panel(ax, np.asarray(data[a]), np.asarray(data[b]), title)
    if real:
        ax = axes[-1]
        s, s_res = np.asarray(data["real_srank"]).ravel(), np.asarray(data["real_srank_res"]).ravel()
        layer = np.repeat(np.arange(np.asarray(data["real_srank"]).shape[0]), np.asarray(data["real_srank"]).shape[1])
        sc = ax.scatter(s, s_res, c=layer, cmap="viridis", s=14)
        lo, hi = min(s.min(), s_res.min()) * 0.9, max(s.max(), s_res.max()) * 1.1
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="no change")
        ax.set_xscale("log")
        ax.set_yscale("log")
        below = int(np.sum(s_res < s))
        ax.set_xlabel(r"srank($D^{-1}A$)")
        ax.set_ylabel(r"srank($D^{-1}A_{res}$)")
        ax.set_title(f"stable ranks of all MiniLM heads: {below}/{s.size} reduced", fontsize=9)
        fig.colorbar(sc, ax=ax, label="layer")
        ax.legend(fontsize=8)
    label = str(data["real_label"]) + "; " if real else ""
    fig.suptitle("KDEformer Figure 2: singular values and stable rank of $D^{-1}A$ vs $D^{-1}A_{res}$\n"
                 f"{label}{data['synthetic_label']}", fontsize=11)
    fig.tight_layout()
    return _style.save(fig, NAME, outdir)
