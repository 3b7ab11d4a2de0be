"""One look for every figure: Agg backend, readable fonts, a fixed colour per method, PNG + PDF output.

Figure scripts call :func:`apply` once (``make_all`` does it for them), take colours from :func:`color_for`, and
write with :func:`save`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files, never windows; also works on machines without a display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

__all__ = ["RC", "METHOD_COLORS", "apply", "color_for", "save", "plt"]

RC = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable and searchable
}

# Colour-blind-safe (Okabe-Ito + Tableau extras). The methods of the paper's comparisons are fixed here so that a
# method keeps its colour across figures; keys are lower case without separators (see _key).
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
            "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF")
METHOD_COLORS = {
    "kdeformer": "#0072B2",
    "exact": "#000000",
    "performer": "#D55E00",
    "reformer": "#009E73",
    "scatterbrain": "#CC79A7",
    "nystrom": "#E69F00",
    "nystromformer": "#E69F00",
    "uniform": "#7F7F7F",
    "hyperattention": "#56B4E9",
    "randomsampling": "#8C564B",
    "hbe": "#BCBD22",
    "ckns": "#17BECF",
}


def _key(method: str) -> str:
    return "".join(ch for ch in str(method).lower() if ch.isalnum())


def color_for(method: str) -> str:
    """The colour of ``method`` in every figure.

    Known methods get a fixed colour; any other name gets a palette colour chosen by a CRC32 of its name, which
    (unlike ``hash``) is the same in every process and every run.
    """
    key = _key(method)
    if not key:
        raise ValueError(f"color_for: method={method!r} has no letters or digits; pass the method's name")
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return _PALETTE[zlib.crc32(key.encode()) % len(_PALETTE)]


def apply() -> None:
    """Set the shared rcParams (idempotent)."""
    matplotlib.rcParams.update(RC)


def save(fig, name: str, outdir) -> list[Path]:
    """Write ``fig`` as ``<outdir>/<name>.png`` (150 dpi) and ``<outdir>/<name>.pdf``, then close it.

    Returns
    -------
    list of Path
        The two files written.
    """
    if not isinstance(name, str) or not name or any(sep in name for sep in "/\\"):
        raise ValueError(f"save: name={name!r} must be a plain file stem such as 'figure_2_stable_rank'")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
