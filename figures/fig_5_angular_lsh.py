"""Figure 5: rank-2 angular LSH in the plane. (a) points coloured by bucket, the two hyperplanes, each cell labelled
with its code and Gray-code position; (b) the points sorted by Gray position and cut into 4 equal-size blocks.
Inset data: adjacency of the Gray order versus the authors' order for r = 1..12.
Data: claim ``gray_code_adjacency`` (proofs_checks/angular_lsh.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "figure_5_angular_lsh"
CLAIMS = ("gray_code_adjacency",)


def _plane_panel(ax, X, bucket, rank, W, colors):
    lim = 1.05 * np.max(np.abs(X))
    for k in range(4):
        sel = bucket == k
        if np.any(sel):
            ax.scatter(X[sel, 0], X[sel, 1], s=9, color=colors[k], alpha=0.8,
                       label=f"bucket id {k}: bits $b_2b_1$ = {k:02b}, Gray position {int(rank[sel][0])}")
            centre = X[sel].mean(axis=0)
            ax.text(*(centre * 1.6), f"{k:02b}\npos {int(rank[sel][0])}", ha="center", va="center", fontsize=9,
                    fontweight="bold", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": colors[k]})
    t = np.array([-lim * 1.5, lim * 1.5])
    for l in range(W.shape[1]):
        w = W[:, l] / np.linalg.norm(W[:, l])
        ax.plot(-w[1] * t, w[0] * t, "k-", lw=1.2)  # the hyperplane <w, x> = 0
        ax.annotate("", xy=0.5 * lim * w, xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "k"})
        ax.text(*(0.58 * lim * w), f"$w_{l + 1}$", fontsize=10)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(r"(a) r = 2 hyperplanes, 4 cells; bit $b_l = 1[\langle w_l, x\rangle > 0]$", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")


def _sorted_panel(ax, bucket, rank, block, colors):
    perm = np.argsort(rank, kind="stable")
    n = perm.size
    ax.bar(np.arange(n), np.ones(n), width=1.0, color=[colors[k] for k in bucket[perm]], linewidth=0)
    for t in range(1, int(block.max()) + 1):
        ax.axvline(np.sum(block < t) - 0.5, color="k", lw=2)
    for t in range(int(block.max()) + 1):
        idx = np.nonzero(block[perm] == t)[0]
        ax.text(idx.mean(), 1.08, f"block {t}", ha="center", fontsize=9)
    ax.set_ylim(0, 1.2)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_yticks([])
    ax.set_xlabel("position after sorting by Gray-code position of the bucket")
    ax.set_title("(b) sorted, then truncated into equal-size blocks (buckets spill over)", fontsize=10)


def make(results_dir, outdir):
    data = results.load("gray_code_adjacency", results_dir)
    X, bucket = np.asarray(data["fig5_points"]), np.asarray(data["fig5_bucket"])
    rank, block, W = np.asarray(data["fig5_rank"]), np.asarray(data["fig5_block"]), np.asarray(data["fig5_directions"])
    _style.apply()
    # Four clearly distinct colours for the cells (the method colours of _style are for methods, not buckets).
    colors = [plt.get_cmap("tab10")(k) for k in (0, 1, 2, 4)]
    fig = plt.figure(figsize=(12, 5.2))
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 1.25), height_ratios=(1, 1))
    _plane_panel(fig.add_subplot(grid[:, 0]), X, bucket, rank, W, colors)
    _sorted_panel(fig.add_subplot(grid[0, 1]), bucket, rank, block, colors)
    ax = fig.add_subplot(grid[1, 1])
    r = np.asarray(data["r"])
    ax.plot(r, data["adjacency_gray"], "o-", color=_style.color_for("kdeformer"), label="Gray order g(0), g(1), ...")
    ax.plot(r, data["adjacency_authors"], "s--", color=_style.color_for("reformer"),
            label="authors' order (sort key g(id))")
    ax.set_xlabel("hyperplanes r")
    ax.set_ylabel("consecutive buckets at\nHamming distance 1")
    ax.set_title("(c) adjacency of the bucket order (0.756 at r = 7 for the authors')", fontsize=10)
    ax.set_ylim(0.7, 1.02)
    ax.legend(fontsize=8)
    fig.suptitle("KDEformer Figure 5: angular LSH and the Gray-code (Hamming) ordering of buckets")
    fig.tight_layout()
    return _style.save(fig, NAME, outdir)
