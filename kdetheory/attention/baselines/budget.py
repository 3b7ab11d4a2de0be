"""Budget conventions of the Figure 4 comparison (docs/math.md §7.1): budget F -> each method's parameters."""
from __future__ import annotations

from ..._validation import check_choice, check_int

#: Methods with a budget convention, in the order of the benchmark table.
METHODS = ("kdeformer", "hyperattention", "performer", "scatterbrain", "reformer", "nystrom", "uniform")


def budget_parameters(method, budget):
    """Parameters of ``method`` at budget F (the authors' ``num_feats``) and its feature dimension.

    ==============  ==========================  ==================
    method          parameters at budget F      feature dimension
    ==============  ==========================  ==================
    kdeformer       b = F/2, m = F, r = 7       b + m = 1.5 F
    hyperattention  b = F/2, m = F (uniform)    1.5 F
    performer       F random features           F
    scatterbrain    window F/2 + F features     1.5 F
    reformer        bucket F/2 (2 chunks seen)  F (per round)
    nystrom         1.5 F landmarks             1.5 F
    uniform         1.5 F sampled keys          1.5 F
    ==============  ==========================  ==================

    The first four rows are the authors' settings (docs/math.md §7.1); Nystrom and uniform sampling,
    absent from their figure, get KDEformer's feature dimension so that they are compared at
    equal budget. Performer and Reformer get F, as in the authors' figure (fewer features than
    KDEformer: the table reports the actual feature dimension next to F).

    Parameters
    ----------
    method : str, one of :data:`METHODS`
    budget : int >= 2
        F (even values keep F/2 exact).

    Returns
    -------
    (dict, int)
        Keyword arguments for the method's function, and its feature dimension.
    """
    check_choice("method", method, METHODS)
    F = check_int("budget", budget, minimum=2)
    half, wide = F // 2, (3 * F) // 2
    table = {
        "kdeformer": ({"bucket_size": half, "n_samples": F, "n_hashes": 7}, half + F),
        "hyperattention": ({"bucket_size": half, "n_samples": F, "n_hashes": 7}, half + F),
        "performer": ({"n_features": F}, F),
        "scatterbrain": ({"local_size": half, "n_features": F}, half + F),
        "reformer": ({"bucket_size": half}, 2 * half),
        "nystrom": ({"n_landmarks": wide}, wide),
        "uniform": ({"n_samples": wide}, wide),
    }
    return table[method]


def feature_dimension(method, budget):
    """The feature dimension of ``method`` at budget F (see :func:`budget_parameters`).

    Parameters
    ----------
    method : str, one of :data:`METHODS`
    budget : int >= 2

    Returns
    -------
    int
        The number of keys, landmarks or features per query the method uses at that budget
        (docs/math.md §7.1: 1.5 F for KDEformer with b = F/2, m = F).
    """
    return budget_parameters(method, budget)[1]
