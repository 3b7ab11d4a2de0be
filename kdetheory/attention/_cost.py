"""One cost record for every attention method: what was computed, stage by stage, against exact.

Every approximate attention (Algorithm 1, Algorithm 3, the baselines) returns an :class:`AttentionCost`
so that checks compare methods by the same counts: exact kernel entries (one inner product
``<q_i, k_j>`` each), hash evaluations, samples and FLOPs. ``work_fraction`` is the share of the
``n_q * n_k`` kernel entries of exact attention that the method computed; a randomized method whose
``work_fraction`` is 1 or more answered, in effect, exactly (the checks call that the exact regime).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class StageCost:
    """Cost of one stage of an attention method.

    Attributes
    ----------
    name : str
        The stage, e.g. ``"row_sums_kde"``, ``"sparse"``, ``"residual"``.
    kernel_evaluations : int
        Exact kernel (logit) entries computed in this stage.
    hash_evaluations : int
        Hash-function evaluations (one per point and hash table or hyperplane set).
    flops : int
        Floating-point operations, multiply and add counted separately.
    """

    name: str
    kernel_evaluations: int = 0
    hash_evaluations: int = 0
    flops: int = 0


@dataclass(frozen=True)
class AttentionCost:
    """What an attention method computed, against exact attention on the same shapes.

    Attributes
    ----------
    batch, n_queries, n_keys, d, d_v : int
        Shapes: ``batch`` is the product of the leading axes.
    stages : tuple of StageCost
        Per-stage counts; the totals below are their sums.
    samples : int
        Sampled keys (with multiplicity) over the whole batch; 0 for deterministic methods.
    feature_dimension : int or None
        The paper's budget convention (Figure 4): exact entries plus samples per query, or the
        number of random features; None where the method has no such budget.
    details : mapping
        Method-specific counts (hyperplanes, rounds, bucket size, ...), read-only.
    """

    batch: int
    n_queries: int
    n_keys: int
    d: int
    d_v: int
    stages: tuple = ()
    samples: int = 0
    feature_dimension: int | None = None
    details: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def kernel_evaluations(self) -> int:
        return int(sum(s.kernel_evaluations for s in self.stages))

    @property
    def hash_evaluations(self) -> int:
        return int(sum(s.hash_evaluations for s in self.stages))

    @property
    def flops(self) -> int:
        return int(sum(s.flops for s in self.stages))

    @property
    def exact_kernel_evaluations(self) -> int:
        """``batch * n_queries * n_keys``: the entries exact attention computes."""
        return self.batch * self.n_queries * self.n_keys

    @property
    def exact_flops(self) -> int:
        """FLOPs of exact attention: ``2 batch n_q n_k (d + d_v)`` (two GEMMs)."""
        return 2 * self.batch * self.n_queries * self.n_keys * (self.d + self.d_v)

    @property
    def work_fraction(self) -> float:
        """Kernel entries computed over those of exact attention (>= 1: the exact regime)."""
        return self.kernel_evaluations / max(1, self.exact_kernel_evaluations)

    def stage(self, name: str) -> StageCost:
        """The stage called ``name`` (KeyError naming the stages that exist)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")
