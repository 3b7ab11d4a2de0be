// Fused per-level samples of the GPU-native HashingBasedKDE (form "sample"), compiled by NVRTC through
// cupy.RawModule (kdetheory/_cupy/_module.py, hbe_kernel). One launch replaces the ~40 namespace calls of
// kdetheory._cupy._hbe.device_sample_samples + median_of_means for one chunk of queries at one level
// (Charikar-Siminelakis estimator, docs/math.md §2.2; median of means, docs/math.md §2.3).
//
// One thread block per query i; its threads walk the tables t (stride blockDim.x). Per (i, t), with the
// same arithmetic as the namespace path (DeviceBucketTables.lookup / draw, kernel_over_collision):
//   1. mix the query's k integer hashes (the hash GEMM's output) with the tables' salted 64-bit mix;
//   2. binary search of the mix in table t's sorted bucket mixes [bucket_ptr[t], bucket_ptr[t+1]),
//      then the full-key compare (a distinct key that shares a stored mix finds no bucket);
//   3. the weighted draw: binary search (side "right") of rank + u in table t's cdf_key, clamped to
//      the bucket's members;
//   4. Z[i, t] = (W_B / s) exp(-r^2) / p1(r / w)^k for the drawn member, 0 when the key is absent.
// Then, if n_groups > 0, the block takes the median over n_groups contiguous groups of tables of the
// group means (numpy's median of means, kdetheory.kde._mom.median_of_means) and writes it with the
// number of kernel evaluations (hits) of the query: two values per query, read back in one transfer.
//
// Compile-time constant (-D): KD_KEY, the integer type of the stored keys (int or long long).

typedef KD_KEY Key;

__device__ __forceinline__ long long search_u64(const unsigned long long* v, long long lo, long long hi,
                                                unsigned long long target) {  // side "left"
    while (lo < hi) {
        long long mid = (lo + hi) >> 1;
        if (v[mid] < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

__device__ __forceinline__ long long search_right(const double* v, long long lo, long long hi, double target) {
    while (lo < hi) {
        long long mid = (lo + hi) >> 1;
        if (v[mid] <= target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// kernel_over_collision(r2, k, width): from hbe_common.cuh, prepended at compile time (_module.hbe_kernel).

extern "C" __global__ void hbe_sample_level(
        const long long* __restrict__ codes,             // (m, T, k): query i's key in table t
        const unsigned long long* __restrict__ bucket_mix,
        const Key* __restrict__ bucket_key,              // (n_buckets, k)
        const long long* __restrict__ bucket_ptr,        // (n_tables + 1,)
        const long long* __restrict__ first, const long long* __restrict__ last,
        const long long* __restrict__ members, const double* __restrict__ bucket_weight,
        const double* __restrict__ cdf_key,              // (n_tables * s,)
        const double* __restrict__ Xh, const double* __restrict__ Yh,  // (n, d), (rows of Yh, d)
        const long long* __restrict__ rows,              // (m,): query i is row rows[i] of Yh
        const double* __restrict__ u,                    // (T, m) uniforms of the draws
        int m, int T, int k, int d, long long s, long long table0, unsigned long long mix_seed,
        double width, int n_groups,
        double* __restrict__ Z,                          // (m, T) samples
        double* __restrict__ est, double* __restrict__ kev) {  // (m,) median of means, hits
    extern __shared__ double means[];                     // n_groups group means
    __shared__ int hits;
    const int i = blockIdx.x;
    if (threadIdx.x == 0) hits = 0;
    __syncthreads();
    const double* y = Yh + rows[i] * (long long)d;
    int my_hits = 0;
    for (int tl = threadIdx.x; tl < T; tl += blockDim.x) {
        const long long t = table0 + tl;
        const long long* key = codes + ((long long)i * T + tl) * k;
        unsigned long long h = mix_seed;
        for (int j = 0; j < k; ++j) {
            h ^= (unsigned long long)key[j];
            h *= 0x9E3779B97F4A7C15ULL;
            h ^= h >> 29;
        }
        const long long lo = bucket_ptr[t], hi = bucket_ptr[t + 1];
        const long long b = search_u64(bucket_mix, lo, hi, h);
        bool found = b < hi && bucket_mix[b] == h;
        for (int j = 0; found && j < k; ++j) found = (long long)bucket_key[b * k + j] == key[j];
        double z = 0.0;
        if (found) {
            const double target = (double)(b - lo) + u[tl * (long long)m + i];
            long long p = search_right(cdf_key, t * s, t * s + s, target);
            p = min(max(p, first[b]), last[b] - 1);
            const double* x = Xh + members[p] * (long long)d;
            double r2 = 0.0;
            for (int j = 0; j < d; ++j) {
                const double diff = x[j] - y[j];
                r2 += diff * diff;
            }
            z = bucket_weight[b] / (double)s * kernel_over_collision(r2, (double)k, width);
            ++my_hits;
        }
        Z[(long long)i * T + tl] = z;
    }
    if (my_hits) atomicAdd(&hits, my_hits);
    if (n_groups <= 0) {
        __syncthreads();
        if (threadIdx.x == 0) kev[i] = (double)hits;
        return;
    }
    __syncthreads();  // the block's writes of Z are visible to the block from here
    const int size = T / n_groups;
    for (int g = threadIdx.x; g < n_groups; g += blockDim.x) {
        const double* zg = Z + (long long)i * T + (long long)g * size;
        double sum = 0.0;
        for (int j = 0; j < size; ++j) sum += zg[j];
        means[g] = sum / size;
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // insertion sort of the (few, odd in practice) group means, then the middle
        for (int a = 1; a < n_groups; ++a) {
            const double v = means[a];
            int c = a - 1;
            while (c >= 0 && means[c] > v) { means[c + 1] = means[c]; --c; }
            means[c + 1] = v;
        }
        const int h = n_groups / 2;
        est[i] = (n_groups & 1) ? means[h] : 0.5 * (means[h - 1] + means[h]);
        kev[i] = (double)hits;
    }
}
