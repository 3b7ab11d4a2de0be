"""DLPack in and out (issue 16 item 5) and masked arrays refused (issue 12 item 25), on the CPU with PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from kdetheory._array import dlpack_aware, from_dlpack, is_foreign_array, namespace, to_caller, wrap_public
from kdetheory.attention import softmax_attention
from kdetheory.attention.baselines import coreset_attention, performer, thinformer, vattention
from kdetheory.attention.exact import row_sums
from kdetheory.attention.practical import kdeformer_practical

torch = pytest.importorskip("torch")


def tensors(dtype=torch.float64, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((2, n, 4), generator=g, dtype=dtype) * s for s in (0.5, 0.5, 1.0))


def test_arrays_go_in_and_come_out_without_a_copy():
    t = torch.randn(6, 3, dtype=torch.float64)
    seen = {}

    @dlpack_aware
    def probe(X, *, Y=None):
        seen["X"], seen["Y"] = X, Y
        return X, {"same": Y}

    out, extra = probe(t, Y=t[:, 1:])
    assert type(seen["X"]) is np.ndarray and seen["X"].ctypes.data == t.data_ptr()  # viewed, not copied
    assert seen["Y"].ctypes.data == t[:, 1:].data_ptr() and seen["Y"].strides == (24, 8)
    assert isinstance(out, torch.Tensor) and out.data_ptr() == t.data_ptr()  # handed back, not copied
    assert isinstance(extra["same"], torch.Tensor)
    assert probe(np.ones(2))[0].__class__ is np.ndarray  # NumPy calls pass straight through


REPRESENTATIVE = [
    ("softmax_attention", lambda Q, K, V: dlpack_aware(softmax_attention)(Q, K, V, scale=0.5)),
    ("row_sums", lambda Q, K, V: dlpack_aware(row_sums)(Q, K, scale=0.5)),
    ("kdeformer_practical", lambda Q, K, V: dlpack_aware(kdeformer_practical)(Q, K, V, bucket_size=4, n_samples=6, rng=1)),
    ("performer", lambda Q, K, V: dlpack_aware(performer)(Q, K, V, n_features=8, rng=1)),
    ("vattention", lambda Q, K, V: vattention(Q, K, V, n_sink=1, window=4, n_samples=5, rng=1)),
    ("thinformer", lambda Q, K, V: thinformer(Q, K, V, n_rounds=2, rng=1)),
    ("coreset_attention", lambda Q, K, V: coreset_attention(Q, K, V, n_pivots=6, rng=1)),
]


@pytest.mark.parametrize("name, call", REPRESENTATIVE, ids=[r[0] for r in REPRESENTATIVE])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_public_functions_return_the_callers_type_and_the_numpy_answer(name, call, dtype):
    Qt, Kt, Vt = tensors(dtype)
    got = call(Qt, Kt, Vt)
    want = call(*(x.numpy() for x in (Qt, Kt, Vt)))
    got_out = getattr(got, "output", got)
    want_out = getattr(want, "output", want)
    assert isinstance(got_out, torch.Tensor) and got_out.dtype == dtype
    np.testing.assert_array_equal(got_out.numpy(), want_out)
    if hasattr(got, "log_row_sums"):
        assert isinstance(got.log_row_sums, torch.Tensor)
        assert type(got.cost) is type(want.cost)  # non-array fields are left alone


def test_mixed_numpy_and_torch_inputs_return_torch():
    Qt, Kt, Vt = tensors()
    out = vattention(Qt, Kt.numpy(), Vt, n_sink=24, n_samples=0)
    assert isinstance(out.output, torch.Tensor)
    np.testing.assert_allclose(out.output.numpy(), softmax_attention(Qt.numpy(), Kt.numpy(), Vt.numpy()), atol=1e-12)


def test_tensors_that_cannot_be_viewed_are_refused_with_the_fix():
    Qt, Kt, Vt = tensors()
    with pytest.raises(TypeError, match=r"detach"):
        vattention(Qt.requires_grad_(), Kt, Vt, n_samples=2)


def test_read_only_results_are_copied_once():
    t = torch.ones(3, dtype=torch.float64)
    ro = np.arange(3.0)
    ro.setflags(write=False)
    back = to_caller((ro, 5, "x"), t)
    assert isinstance(back[0], torch.Tensor) and back[1:] == (5, "x")
    np.testing.assert_array_equal(back[0].numpy(), ro)


def test_detection_and_wrap_public():
    assert is_foreign_array(torch.zeros(1)) and not is_foreign_array(np.zeros(1)) and not is_foreign_array(3.0)
    assert from_dlpack(torch.arange(3.0)).tolist() == [0.0, 1.0, 2.0]
    space = {"f": lambda X: X + 1, "C": dict, "n": 3}
    wrap_public(space, ["f", "C", "n", "missing"])
    assert space["f"].__dlpack_aware__ and space["C"] is dict and space["n"] == 3
    assert isinstance(space["f"](torch.zeros(2)), torch.Tensor)
    assert dlpack_aware(space["f"]) is space["f"]  # wrapping twice is a no-op


def test_masked_arrays_are_refused():
    m = np.ma.array(np.ones((4, 2)), mask=[[0, 0], [1, 0], [0, 0], [0, 0]])
    with pytest.raises(TypeError, match=r"masked array, whose mask every computation here would ignore"):
        namespace(m)
    with pytest.raises(TypeError, match=r"masked array"):
        softmax_attention(m, np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(TypeError, match=r"masked array"):
        coreset_attention(np.ones((4, 2)), np.ones((4, 2)), m, n_pivots=2)


def test_every_public_function_is_dlpack_aware():
    """Every public function of the array-taking packages converts DLPack arrays in and out."""
    import inspect

    import kdetheory.amm
    import kdetheory.attention
    import kdetheory.attention.baselines
    import kdetheory.kde
    import kdetheory.linalg

    missing = []
    for module in (kdetheory.amm, kdetheory.attention, kdetheory.attention.baselines, kdetheory.kde, kdetheory.linalg):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) and not getattr(obj, "__dlpack_aware__", False):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"not wrapped for DLPack: {missing}"
