"""Wall-clock of every attention method inside all-MiniLM-L6-v2 (the end-to-end claim's setting).

For each method and budget (fraction of n keys or features per query), all six attention layers are replaced
and the 24 passages of ``kdetheory.datasets.texts.PASSAGES`` are embedded; the time spent inside the attention
callable is compared with exact attention's (``softmax_attention``) on the same calls, next to the FLOP fraction
the method's ``AttentionCost`` reports. Sequence lengths are short (74-196 tokens), so this measures constant
overheads more than asymptotics.

Run: ``python -m benchmarks.end_to_end [--budgets 0.0625 0.125 0.25] [--out benchmarks/results]``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._measure import machine, today
from proofs_checks.end_to_end import METHODS, _Recorder


class _Timed:
    """Wraps an attention callable and accumulates the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __call__(self, Q, K, V, *, scale):
        t0 = time.perf_counter()
        out = self.inner(Q, K, V, scale=scale)
        self.seconds += time.perf_counter() - t0
        return out


def main(argv=None):
    from kdetheory.attention import softmax_attention
    from kdetheory.datasets.minilm import minilm_sentence_embedding
    from kdetheory.datasets.texts import PASSAGES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[1 / 16, 1 / 8, 1 / 4])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    texts = list(PASSAGES)
    exact = _Timed(lambda Q, K, V, *, scale: softmax_attention(Q, K, V, scale=scale))
    E_ref = minilm_sentence_embedding(texts, attention=exact)
    rows = [{"method": "exact", "fraction": 1.0, "attention_s": exact.seconds, "flop_fraction": 1.0,
             "mean_cosine": 1.0}]
    for method in METHODS:
        for fraction in (args.budgets if method != "uniform_attention" else args.budgets[:1]):
            rec = _Recorder(method, fraction, np.random.default_rng(0))
            timed = _Timed(rec)
            E = minilm_sentence_embedding(texts, attention=timed)
            rows.append({"method": method, "fraction": fraction, "attention_s": timed.seconds,
                         "flop_fraction": rec.flops / rec.exact_flops,
                         "mean_cosine": float(np.mean(np.sum(E * E_ref, axis=1)))})
            print(f"{method:<18}{fraction:>8.4f}{timed.seconds:>9.3f} s (exact {exact.seconds:.3f} s)"
                  f"  FLOPs {rows[-1]['flop_fraction']:.3f}  cos {rows[-1]['mean_cosine']:.4f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "end_to_end_cpu.json"
    path.write_text(json.dumps({"machine": machine(), "date": today(), "texts": len(texts), "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
