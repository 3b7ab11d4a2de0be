"""CuPy twin of the top-eigenvalue step of :func:`kdetheory.attention.practical._probabilities`
(``sigma_max([V, 1])^2``, the largest eigenvalue of the small Gram matrix) as one kernel launch:
the host path calls LAPACK (``numpy.linalg.eigvalsh``); a batched GPU eigensolver costs more
than everything else in the sampling distribution."""
from __future__ import annotations

import functools

_SOURCE = r"""
// One block per matrix. A <- G^(2^s) / trace by repeated squaring (A tends to the orthogonal
// projector onto the top eigenspace, scaled), then lambda = Rayleigh quotient of G at the column
// of A with the largest diagonal entry (an eigenvector of the top eigenvalue up to
// (lambda_2 / lambda_1)^(2^s)); G is positive semi-definite with a positive trace.
extern "C" __global__ void top_eigenvalue(const double* __restrict__ G, int N, int squarings,
                                          double* __restrict__ out) {
    extern __shared__ double sm[];
    double* A = sm;              // [N][N]
    double* C = sm + N * N;      // [N][N]
    double* v = sm + 2 * N * N;  // [N]
    __shared__ double trace;
    const double* g = G + (size_t)blockIdx.x * N * N;
    for (int e = threadIdx.x; e < N * N; e += blockDim.x) A[e] = g[e];
    __syncthreads();
    for (int s = 0; s < squarings; ++s) {
        for (int e = threadIdx.x; e < N * N; e += blockDim.x) {
            int i = e / N, j = e - i * N;
            double acc = 0;
            for (int k = 0; k < N; ++k) acc += A[i * N + k] * A[k * N + j];
            C[e] = acc;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double t = 0;
            for (int i = 0; i < N; ++i) t += C[i * N + i];
            trace = t;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < N * N; e += blockDim.x) A[e] = C[e] / trace;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int best = 0;
        for (int i = 1; i < N; ++i) if (A[i * N + i] > A[best * N + best]) best = i;
        for (int i = 0; i < N; ++i) v[i] = A[i * N + best];
        double num = 0, den = 0;
        for (int i = 0; i < N; ++i) {
            double gv = 0;
            for (int k = 0; k < N; ++k) gv += g[i * N + k] * v[k];
            num += v[i] * gv;
            den += v[i] * v[i];
        }
        out[blockIdx.x] = num / den;
    }
}
"""

#: Squarings: the Rayleigh quotient's relative error is below (1 - lambda_2/lambda_1) (lambda_2/lambda_1)^(2^13),
#: i.e. below 1e-12 unless the top two eigenvalues agree to about 3e-3 relative, and then below their gap.
SQUARINGS = 13


@functools.lru_cache(maxsize=None)
def _kernel():
    import cupy as cp

    return cp.RawKernel(_SOURCE, "top_eigenvalue")


def top_eigenvalue(gram):
    """Largest eigenvalue of each (N x N) positive semi-definite matrix of ``gram`` (B, N, N), float64.

    Parameters
    ----------
    gram : (B, N, N) cupy array
        Symmetric, positive semi-definite, positive trace (``[V, 1]^T [V, 1]``); N <= 100 or so
        (three N x N float64 buffers in shared memory; larger N falls back to ``cupy.linalg.eigvalsh``).

    Returns
    -------
    (B,) float64 cupy array
    """
    import cupy as cp

    B, N, _ = gram.shape
    smem = 8 * (2 * N * N + N)
    if smem > 160 * 1024:
        return cp.linalg.eigvalsh(gram)[..., -1]
    fn = _kernel()
    if smem > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = smem
    out = cp.empty(B, dtype=cp.float64)
    fn((B,), (256,), (cp.ascontiguousarray(gram, dtype=cp.float64), cp.int32(N), cp.int32(SQUARINGS), out), shared_mem=smem)
    return out
