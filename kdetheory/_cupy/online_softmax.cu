// Fused online-softmax reduction (kdetheory._stream.online_softmax), compiled by NVRTC through
// cupy.RawModule. One thread block owns BQ = 16 * TM query rows of one batch element and walks
// its key tiles (BK keys each): first the contiguous key range of its rows, then the index list.
// Per tile, the logits live in registers (a TM x TN micro-tile per thread) and, exponentiated,
// once in shared memory for the product with V; they never reach device memory.
//
// Compile-time constants (-D): KD_T (float | double), KD_D (feature dim), KD_P (value dim, may
// be 0), KD_TM (rows per thread), KD_BK (keys per tile, a multiple of 16), KD_ASYNC (1: 16-byte
// rows, so key and value tiles are copied by cp.async into a second shared-memory buffer while
// the current tile is computed; 0: plain loads, any d and p).
// Thread layout: 256 threads, ty = tid / 16 owns rows ty*TM .. ty*TM+TM-1, tx = tid % 16 owns
// tile columns tx + 16 j (j < TN) of the logits and value columns tx*PC .. tx*PC+PC-1. The 16
// threads of a row group are 16 consecutive lanes of one warp, so row maxima and sums are
// __shfl_xor reductions with offsets 8, 4, 2, 1. Shared-memory rows are padded so that the
// 16-byte reads of 8 consecutive lanes fall in 8 distinct bank groups.

typedef KD_T T;
constexpr int D = KD_D, P = KD_P, TM = KD_TM, BK = KD_BK;
constexpr int NT = 256;                  // threads per block
constexpr int BQ = 16 * TM;              // query rows per block
constexpr int TN = BK / 16;              // logit columns per thread
constexpr int PP = (P + 15) / 16 * 16;   // value columns, padded
constexpr int PC = PP / 16;              // value columns per thread
constexpr int PCA = PC > 0 ? PC : 1;     // (arrays need a positive size)
constexpr bool ASYNC = KD_ASYNC;
constexpr int VEC = 16 / sizeof(T);      // values per 16-byte chunk
constexpr int KV = ASYNC ? VEC : 1;      // features per shared-memory read of a key row
constexpr int DS = D + (ASYNC ? VEC : 1);  // padded key row (16-byte aligned when ASYNC)
constexpr int BQP = BQ + VEC;            // padded row of the exponentiated tile
constexpr int DV = ASYNC ? D / VEC : 1;  // 16-byte chunks per key row (ASYNC)
constexpr int PV = ASYNC && P > 0 ? P / VEC : 1;  // and per value row

// Type-generic helpers (T is float or double; both branches of each are valid for either).
__device__ __forceinline__ T neg_inf() {
    if constexpr (sizeof(T) == 4) return -__int_as_float(0x7f800000);
    else return -__longlong_as_double(0x7ff0000000000000LL);
}
__device__ __forceinline__ T ex(T x) {
    if constexpr (sizeof(T) == 4) return expf(x);
    else return exp(x);
}
__device__ __forceinline__ T ln(T x) {
    if constexpr (sizeof(T) == 4) return logf(x);
    else return log(x);
}
__device__ __forceinline__ T mx2(T a, T b) { return a > b ? a : b; }

// N consecutive values from shared memory, 16-byte loads where the layout allows it.
template <typename U, int N>
__device__ __forceinline__ void lds(U (&r)[N], const U* p) {
    if constexpr (sizeof(U) == 4 && N % 4 == 0) {
#pragma unroll
        for (int q = 0; q < N / 4; ++q) {
            float4 v = reinterpret_cast<const float4*>(p)[q];
            r[4 * q] = v.x; r[4 * q + 1] = v.y; r[4 * q + 2] = v.z; r[4 * q + 3] = v.w;
        }
    } else if constexpr (sizeof(U) == 8 && N % 2 == 0) {
#pragma unroll
        for (int q = 0; q < N / 2; ++q) {
            double2 v = reinterpret_cast<const double2*>(p)[q];
            r[2 * q] = v.x; r[2 * q + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int q = 0; q < N; ++q) r[q] = p[q];
    }
}

// N consecutive values to shared memory (16-byte stores where possible).
template <typename U, int N>
__device__ __forceinline__ void sts(U* p, const U (&r)[N]) {
    if constexpr (sizeof(U) == 4 && N % 4 == 0) {
#pragma unroll
        for (int q = 0; q < N / 4; ++q)
            reinterpret_cast<float4*>(p)[q] = make_float4(r[4 * q], r[4 * q + 1], r[4 * q + 2], r[4 * q + 3]);
    } else if constexpr (sizeof(U) == 8 && N % 2 == 0) {
#pragma unroll
        for (int q = 0; q < N / 2; ++q) reinterpret_cast<double2*>(p)[q] = make_double2(r[2 * q], r[2 * q + 1]);
    } else {
#pragma unroll
        for (int q = 0; q < N; ++q) p[q] = r[q];
    }
}

// 16 bytes global -> shared without a register round trip; src_bytes = 0 writes zeros.
__device__ __forceinline__ void copy16(void* dst, const void* src, int src_bytes) {
    unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(d), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void copy_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

__device__ __forceinline__ int block_of(const int* q_start, int n_blocks, int i) {
    // last t with q_start[t] <= i (q_start non-decreasing, q_start[0] = 0)
    int a = 0, b = n_blocks - 1;
    while (a < b) {
        int c = (a + b + 1) >> 1;
        if (q_start[c] <= i) a = c; else b = c - 1;
    }
    return a;
}

extern "C" __global__ void __launch_bounds__(NT)
online_softmax(const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
               const T* __restrict__ log_w,                       // (B, n_k) or null
               const int* __restrict__ q_start, const int* __restrict__ k_lo, const int* __restrict__ k_hi,
               int n_blocks, int sum_range,
               const int* __restrict__ index, const T* __restrict__ index_log_w, int m,  // (B, m) or null
               T scale, int B, int n_q, int n_k, int n_qtiles, int n_split,
               T* __restrict__ mx_out, T* __restrict__ acc_out)  // (S, B, n_q), (S, B, n_q, P + 1)
{
    constexpr int NBUF = ASYNC ? 2 : 1;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* Qt = reinterpret_cast<T*>(smem_raw);  // [D][BQ]          scaled queries, transposed
    T* Ks = Qt + D * BQ;                      // [NBUF][BK][DS]   key tiles, row-major
    T* Vs = Ks + NBUF * BK * DS;              // [NBUF][BK][PP]   value tiles
    T* Pt = Vs + NBUF * BK * PP;              // [BK][BQP]        exp(logit - max), transposed
    T* lw = Pt + (P > 0 ? BK * BQP : 0);      // [NBUF][BK]       log-weight of each tile column (-inf: none)
    int* kid = reinterpret_cast<int*>(lw + NBUF * BK);  // [NBUF][BK] key position of each tile column
    __shared__ int s_lo, s_hi;

    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int b = blockIdx.x / n_qtiles, q0 = (blockIdx.x % n_qtiles) * BQ, z = blockIdx.y;

    // This thread's rows and their key ranges; the tile walks the union of its rows' ranges.
    int lo[TM], hi[TM];
    if (tid == 0) { s_lo = n_k; s_hi = 0; }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int qi = q0 + ty * TM + i;
        if (qi < n_q) {
            int t = block_of(q_start, n_blocks, qi);
            lo[i] = k_lo[t]; hi[i] = max(k_hi[t], k_lo[t]);
            if (tx == 0 && hi[i] > lo[i]) { atomicMin(&s_lo, lo[i]); atomicMax(&s_hi, hi[i]); }
        } else {
            lo[i] = 0; hi[i] = 0;
        }
    }
    for (int e = tid; e < D * BQ; e += NT) {  // e -> (row r = e % BQ, feature k = e / BQ)
        int r = e % BQ, k = e / BQ, qi = q0 + r;
        Qt[k * BQ + r] = qi < n_q ? scale * Q[((size_t)b * n_q + qi) * D + k] : (T)0;
    }
    for (int e = tid; e < NBUF * BK * PP; e += NT) Vs[e] = 0;  // padding columns stay zero
    __syncthreads();
    const int r_lo = s_lo, r_hi = s_hi;
    const int n_range = (sum_range && r_hi > r_lo) ? (r_hi - r_lo + BK - 1) / BK : 0;
    const int n_index = (m + BK - 1) / BK;
    const int n_tiles = n_range + n_index, per = (n_tiles + n_split - 1) / n_split;
    const int it0 = z * per, it1 = min(n_tiles, it0 + per);

    // Key position and weight of each column of tile `it` (threads < BK), into buffer `buf`.
    auto tile_ids = [&](int it, int buf) {
        if (tid < BK) {
            int c = tid, j = -1;
            T w = neg_inf();
            if (it < n_range) {
                j = r_lo + it * BK + c;
                if (j < r_hi) w = log_w ? log_w[(size_t)b * n_k + j] : (T)0; else j = -1;
            } else {
                int s = (it - n_range) * BK + c;
                if (s < m) { j = index[(size_t)b * m + s]; w = index_log_w[(size_t)b * m + s]; }
            }
            kid[buf * BK + c] = j; lw[buf * BK + c] = w;
        }
    };
    // Keys and values of the tile whose ids are in buffer `buf` (asynchronous when ASYNC).
    auto tile_rows = [&](int buf) {
        const int* ids = kid + buf * BK;
        T* Kb = Ks + buf * BK * DS;
        T* Vb = Vs + buf * BK * PP;
        if constexpr (ASYNC) {
            for (int e = tid; e < BK * DV; e += NT) {
                int c = e / DV, part = e % DV, j = ids[c];
                copy16(Kb + c * DS + part * VEC, K + ((size_t)b * n_k + max(j, 0)) * D + part * VEC, j >= 0 ? 16 : 0);
            }
            if constexpr (P > 0) {
                for (int e = tid; e < BK * PV; e += NT) {
                    int c = e / PV, part = e % PV, j = ids[c];
                    copy16(Vb + c * PP + part * VEC, V + ((size_t)b * n_k + max(j, 0)) * P + part * VEC, j >= 0 ? 16 : 0);
                }
            }
            copy_commit();
        } else {
            for (int e = tid; e < BK * D; e += NT) {
                int c = e / D, k = e - c * D, j = ids[c];
                Kb[c * DS + k] = j >= 0 ? K[((size_t)b * n_k + j) * D + k] : (T)0;
            }
            if constexpr (P > 0) {
                for (int e = tid; e < BK * P; e += NT) {
                    int c = e / (P > 0 ? P : 1), v = e - c * P, j = ids[c];
                    Vb[c * PP + v] = j >= 0 ? V[((size_t)b * n_k + j) * P + v] : (T)0;
                }
            }
        }
    };

    T mrow[TM], lrow[TM], o[TM][PCA];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        mrow[i] = neg_inf(); lrow[i] = 0;
#pragma unroll
        for (int c = 0; c < PCA; ++c) o[i][c] = 0;
    }

    if (it0 < it1) {
        tile_ids(it0, 0);
        __syncthreads();
        tile_rows(0);
    }
    for (int it = it0; it < it1; ++it) {
        const int cur = ASYNC ? (it - it0) & 1 : 0, nxt = cur ^ 1;
        const bool in_range = it < n_range;
        if constexpr (ASYNC) {
            // Prefetch the next tile into the other buffer (last read in the previous iteration).
            if (it + 1 < it1) tile_ids(it + 1, nxt);
            __syncthreads();
            if (it + 1 < it1) tile_rows(nxt); else copy_commit();
            copy_wait_one();  // every group but the newest has landed: this tile's rows
        } else if (it > it0) {  // plain loads: the one buffer was freed by the previous iteration
            tile_ids(it, 0);
            __syncthreads();
            tile_rows(0);
        }
        __syncthreads();
        const T* Kb = Ks + cur * BK * DS;
        const T* Vb = Vs + cur * BK * PP;
        const int* ids = kid + cur * BK;
        const T* wts = lw + cur * BK;

        // Logits of the TM x TN micro-tile (columns tx + 16 j).
        T s[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) s[i][j] = 0;
#pragma unroll 2
        for (int k0 = 0; k0 < D; k0 += KV) {
            T kk[TN][KV];
#pragma unroll
            for (int j = 0; j < TN; ++j) lds(kk[j], Kb + (tx + 16 * j) * DS + k0);
#pragma unroll
            for (int q = 0; q < KV; ++q) {
                T a[TM];
                lds(a, Qt + (k0 + q) * BQ + ty * TM);
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) s[i][j] += a[i] * kk[j][q];
            }
        }
        // Weights and masks: range tiles keep the row's own range, index tiles drop it.
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = tx + 16 * j, kj = ids[c];
            const T w = wts[c];
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                const bool inside = kj >= lo[i] && kj < hi[i];
                const bool keep = kj >= 0 && w != neg_inf() && (in_range ? inside : !inside);
                s[i][j] = keep ? s[i][j] + w : neg_inf();
            }
        }
        // Online softmax: new row maximum over the 16 threads of the row, rescale, exponentiate.
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            T mt = s[i][0];
#pragma unroll
            for (int j = 1; j < TN; ++j) mt = mx2(mt, s[i][j]);
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mt = mx2(mt, __shfl_xor_sync(0xffffffffu, mt, off));
            const T mnew = mx2(mrow[i], mt);
            const T shift = mnew == neg_inf() ? (T)0 : mnew;  // no key yet: avoid inf - inf
            const T alpha = ex(mrow[i] - shift);
            mrow[i] = mnew;
            lrow[i] *= alpha;
#pragma unroll
            for (int c = 0; c < PCA; ++c) o[i][c] *= alpha;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                s[i][j] = ex(s[i][j] - shift);
                lrow[i] += s[i][j];
            }
        }
        if constexpr (P > 0) {
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                T col[TM];
#pragma unroll
                for (int i = 0; i < TM; ++i) col[i] = s[i][j];
                sts(Pt + (tx + 16 * j) * BQP + ty * TM, col);
            }
            __syncthreads();
#pragma unroll 4
            for (int k = 0; k < BK; ++k) {
                T pr[TM], vv[PCA];
                lds(pr, Pt + k * BQP + ty * TM);
                lds(vv, Vb + k * PP + tx * PC);
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int c = 0; c < PC; ++c) o[i][c] += pr[i] * vv[c];
            }
        }
        __syncthreads();  // this tile's buffers and Pt are free again
    }

    // Row sums: each thread summed its own columns; add up the 16 threads of the row.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        T l = lrow[i];
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
        const int qi = q0 + ty * TM + i;
        if (qi >= n_q) continue;
        const size_t row = ((size_t)z * B + b) * n_q + qi;
        if (tx == 0) { mx_out[row] = mrow[i]; acc_out[row * (P + 1) + P] = l; }
#pragma unroll
        for (int c = 0; c < PC; ++c) {
            const int v = tx * PC + c;
            if (v < P) acc_out[row * (P + 1) + v] = o[i][c];
        }
    }
}

// Practical KDEformer, step 5: merge the sparse and residual accumulators under one shift,
// normalise, and write every row at its input position (perm[b, i] = input row of sorted row i).
// One thread per (b, sorted row i, column v) of the (P + 1)-wide accumulators.
extern "C" __global__ void
finish(const T* __restrict__ mx_s, const T* __restrict__ acc_s, const T* __restrict__ mx_r,
       const T* __restrict__ acc_r, const long long* __restrict__ perm, int B, int n_q,
       T* __restrict__ out, T* __restrict__ log_d, T* __restrict__ sparse, T* __restrict__ residual,
       T* __restrict__ shift_out)
{
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)B * n_q * (P + 1)) return;
    const size_t row = e / (P + 1);
    const int v = (int)(e % (P + 1));
    const int b = (int)(row / n_q);
    const size_t dst = (size_t)b * n_q + perm[row];
    const T ms = mx_s[row], mr = mx_r[row];
    const T shift = mx2(ms, mr);  // ms is finite: a query's own block is never empty
    const T fs = ex(ms - shift), fr = ex(mr - shift);  // exp(-inf) = 0 when no sample survived
    const T total = acc_s[row * (P + 1) + P] * fs + acc_r[row * (P + 1) + P] * fr;
    const T sp = acc_s[e] * fs, re = acc_r[e] * fr;
    sparse[dst * (P + 1) + v] = sp;
    residual[dst * (P + 1) + v] = re;
    if (v < P) out[dst * P + v] = (sp + re) / total;
    else { log_d[dst] = shift + ln(total); shift_out[dst] = shift; }
}
