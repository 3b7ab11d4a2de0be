"""DLPack with CUDA tensors (issue 16 item 5): PyTorch CUDA tensors in, viewed by CuPy without a copy,
PyTorch CUDA tensors out. Skips without a GPU, CuPy or a CUDA build of PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from kdetheory._array import cupy_available, dlpack_aware, from_dlpack
from kdetheory.attention import softmax_attention
from kdetheory.attention.baselines import coreset_attention, thinformer, vattention
from kdetheory.attention.practical import kdeformer_practical

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not (cupy_available() and torch.cuda.is_available()),
                                reason="needs a CUDA GPU with CuPy and a CUDA build of PyTorch")


def cuda_tensors(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple((torch.randn((2, n, 8), generator=g, dtype=torch.float64) * s).cuda() for s in (0.5, 0.5, 1.0))


def test_cuda_tensors_are_viewed_by_cupy_without_a_copy():
    import cupy

    t = torch.randn(16, 4, dtype=torch.float64, device="cuda")
    a = from_dlpack(t)
    assert isinstance(a, cupy.ndarray) and a.data.ptr == t.data_ptr()
    back = dlpack_aware(lambda X: X)(t)
    assert isinstance(back, torch.Tensor) and back.is_cuda and back.data_ptr() == t.data_ptr()


@pytest.mark.parametrize("call", [
    lambda Q, K, V: dlpack_aware(softmax_attention)(Q, K, V, scale=0.5),
    lambda Q, K, V: dlpack_aware(kdeformer_practical)(Q, K, V, bucket_size=8, n_samples=8, rng=1).output,
    lambda Q, K, V: vattention(Q, K, V, n_sink=1, window=4, n_samples=8, rng=1).output,
    lambda Q, K, V: thinformer(Q, K, V, n_rounds=2, rng=1).output,
    lambda Q, K, V: coreset_attention(Q, K, V, n_pivots=8, rng=1).output,
])
def test_cuda_tensors_in_cuda_tensors_out(call):
    Qt, Kt, Vt = cuda_tensors()
    got = call(Qt, Kt, Vt)
    assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == torch.float64
    want = call(*(x.cpu().numpy() for x in (Qt, Kt, Vt)))
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-9, atol=1e-12)
