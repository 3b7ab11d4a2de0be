"""Test configuration: a deterministic hypothesis profile for CI (DESIGN.md)."""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    from kdetheory._array import cupy_available

    if cupy_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", params=["numpy", "numba", "cupy"])
def backend(request):
    """Each compute backend in turn; "cupy" is skipped without CuPy and a GPU (run it on the lent GPU machine)."""
    from kdetheory._array import cupy_available

    if request.param == "cupy" and not cupy_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    return request.param


@pytest.fixture
def small_chunks():
    """Shrink ``_config.CHUNK_BYTES`` to 2 KiB so that every chunked loop runs its multi-block path."""
    from kdetheory import _config

    _config.CHUNK_BYTES = 2048
    yield _config.CHUNK_BYTES
    _config.reset()
