// exp(-r^2) / p1(r / w)^k: the kernel value over the k-fold E2LSH collision probability at distance r and
// bucket width w (p1 of Datar et al., docs/math.md §2.2), with log p1 bounded away from -inf and its
// small-distance limit -sqrt(2/pi) c. The one CUDA copy of this formula: prepended to hbe.cu by
// kdetheory._cupy._module.hbe_kernel and used as the preamble of the elementwise kernel of
// kdetheory._cupy._hbe.kernel_over_collision (whose NumPy twin is in the same module).
__device__ __forceinline__ double kernel_over_collision(double r2, double k, double width) {
    double c = sqrt(r2) / width;
    double lp;
    if (c >= 1e-100) {
        double p = erf(1.0 / (1.4142135623730951 * c)) + 0.7978845608028654 * c * expm1(-0.5 / (c * c));
        lp = log(fmax(p, 2.2250738585072014e-308));
    } else {
        lp = -0.7978845608028654 * c;
    }
    return exp(-r2 - k * lp);
}
