"""End to end on all-MiniLM-L6-v2: mean cosine of sentence embeddings to exact versus attention FLOPs, per
replaced-layer setting, for every method at its budgets, with uniform attention (mean of V) as the trivial
baseline. Data: claim ``end_to_end_minilm`` (proofs_checks/end_to_end.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from proofs_checks import results

from . import _style

_MARKERS = "os^vD<>phX*"  # a marker per method as well as a colour: some palette colours are close

NAME = "end_to_end_minilm"
CLAIMS = ("end_to_end_minilm",)


def make(results_dir, outdir):
    data = results.load("end_to_end_minilm", results_dir)
    rows, settings = data["rows"], list(data["settings"])
    drop, limit = float(data["drop"]), float(data["flop_fraction_limit"])
    _style.apply()
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4), sharey=True)
    for ax, setting in zip(axes, settings):
        here = [r for r in rows if r["setting"] == setting]
        for k, method in enumerate(dict.fromkeys(r["method"] for r in here)):
            mine = sorted((r for r in here if r["method"] == method), key=lambda r: r["flop_fraction"])
            if method == "uniform_attention":
                ax.axhline(mine[0]["mean_cosine"], color="k", ls=":", lw=1.2, label="uniform attention (mean of V)")
                continue
            ax.plot([r["flop_fraction"] for r in mine], [r["mean_cosine"] for r in mine], "-",
                    marker=_MARKERS[k % len(_MARKERS)], color=_style.color_for(method), label=method,
                    lw=2.4 if method == "kdeformer" else 1.2, ms=7 if method == "kdeformer" else 5)
        ax.axhline(1 - drop, color="0.4", ls="--", lw=1, label=f"small drop: cos = {1 - drop:g}")
        ax.axvline(limit, color="0.6", ls="-.", lw=1, label=f"large reduction: FLOPs = {limit:g}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("attention FLOPs / exact (replaced layers)")
        ax.set_title(f"replaced: {setting}", fontsize=10)
    axes[0].set_ylabel("mean cosine to exact embedding")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=7, bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("all-MiniLM-L6-v2 sentence embeddings with approximate attention", fontsize=11)
    return _style.save(fig, NAME, outdir)
