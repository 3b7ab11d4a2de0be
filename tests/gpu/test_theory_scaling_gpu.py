"""GPU path of benchmarks/theory_scaling (issue 15 item 1): the blocked eq. (2) references, SDPA through DLPack and
a small end-to-end run, all on CuPy data. Deterministic comparisons with the host (no statistical tests here:
the KDEformer error itself is only recorded by the benchmark)."""
import json
import math

import numpy as np
import pytest

from kdetheory._array import cupy_available
from kdetheory.attention import row_sums, softmax_attention

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]


@pytest.fixture
def cp():
    import cupy

    return cupy


def test_blocked_norms_on_device_match_host(cp, monkeypatch):
    from benchmarks import theory_scaling as ts
    from kdetheory import _config

    Q, K, V = ts.instance(1000, 16, 0.5, 0, np, np.float64)
    monkeypatch.setattr(_config, "CHUNK_BYTES", 8 * 1000 * 37)  # ragged key blocks
    Qd, Kd, Vd = (cp.asarray(a) for a in (Q, K, V))
    np.testing.assert_allclose(cp.asnumpy(ts.log_row_sums(Qd, Kd, cp)), row_sums(Q, K, log=True), rtol=1e-12)
    P = np.exp(Q @ K.T - row_sums(Q, K, log=True)[:, None])
    bound, converged = ts.attention_matrix_norm(Qd, Kd, cp, 300)
    assert converged and math.isclose(bound, np.linalg.norm(P, 2), rel_tol=1e-6)
    exact = softmax_attention(Qd, Kd, Vd)
    out = exact + 0.01 * cp.asarray(np.random.default_rng(1).standard_normal(V.shape))
    want = np.linalg.norm(cp.asnumpy(out - exact), 2) / (np.linalg.norm(P, 2) * np.linalg.norm(V, 2))
    assert math.isclose(ts.eq2_error(out, exact, Vd, bound), want, rel_tol=1e-6)


def test_sdpa_on_device_matches_fused_kernel(cp):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    from benchmarks import theory_scaling as ts

    Q, K, V = ts.instance(4096, 64, 0.25, 2, cp, np.float32)
    got = ts.sdpa(Q, K, V)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(got), cp.asnumpy(softmax_attention(Q, K, V)), rtol=2e-3, atol=2e-5)


def test_small_gpu_run_writes_records(cp, tmp_path):
    from benchmarks import theory_scaling as ts

    out = tmp_path / "ts_gpu"
    ts.main(["--device", "gpu", "--sizes", "1024", "2048", "4096", "--sizing", "adaptive", "worst_case",
             "--budget-s", "300", "--out", str(out)])
    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["n"] for r in record["rows"]] == [1024, 2048, 4096]
    for r in record["rows"]:
        assert set(r["kdeformer"]) == {"adaptive", "worst_case"}
        assert all(k["eq2_error"] < 1 and k["eq2_error_kind"] == "exact" for k in r["kdeformer"].values())
