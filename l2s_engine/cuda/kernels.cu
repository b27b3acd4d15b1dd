// l2s-engine CUDA kernels: the ONE kernel source. Compiled ahead of time to a fatbin by
// CMakeLists.txt, or at run time by CuPy (RawModule(code=...)) when no fatbin matches.
//
// Each kernel has a numpy twin on the host path (named below); the GPU tests compare them.
// Arithmetic that the numpy twin does in float32 is written with round-to-nearest
// intrinsics (__fadd_rn, __fmul_rn, ...), which nvcc never contracts into fused multiply-adds,
// so those kernels give the numpy result bit for bit. Volumes are C-ordered float32 (z, y, x);
// every kernel is a grid-stride loop, so any launch size covers any element count.

#define GRID_STRIDE_LOOP(i, n)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);         \
         i += (long long)blockDim.x * gridDim.x)

// ---- preprocessing --------------------------------------------------------------------------

// preprocess.window: clip to [low, high], then (v - low) * scale - 1 (scale = 2 / (high - low)).
extern "C" __global__ void normalise(const float* __restrict__ src, float* __restrict__ dst, long long n,
                                     float low, float high, float scale) {
    GRID_STRIDE_LOOP(i, n) {
        const float v = fminf(fmaxf(src[i], low), high);
        dst[i] = __fsub_rn(__fmul_rn(__fsub_rn(v, low), scale), 1.0f);
    }
}

// ---- resampling to the networks' spacing and back ------------------------------------------

// resample.resample: src (in_d, in_h, in_w) onto dst (out_d, out_h, out_w), one output voxel per
// thread, in numpy's pass order (z, then y, then x) with one rounding per operation, so the
// result equals the separable numpy passes bit for bit. A NULL table keeps that axis (output
// index = source index, no arithmetic), as numpy skips the pass.
__device__ __forceinline__ float lerp_rn(float a, float b, float w) {
    return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), w));
}

// Linear: per axis index0, index1 and weight1 (resample.linear_table): v = a + (b - a) * w.
extern "C" __global__ void resample_linear(const float* __restrict__ src, float* __restrict__ dst,
                                           int in_h, int in_w, int out_d, int out_h, int out_w,
                                           const int* __restrict__ z0, const int* __restrict__ z1,
                                           const float* __restrict__ zw,
                                           const int* __restrict__ y0, const int* __restrict__ y1,
                                           const float* __restrict__ yw,
                                           const int* __restrict__ x0, const int* __restrict__ x1,
                                           const float* __restrict__ xw) {
    const long long n = (long long)out_d * out_h * out_w;
    GRID_STRIDE_LOOP(i, n) {
        const int x = (int)(i % out_w);
        const int y = (int)((i / out_w) % out_h);
        const int z = (int)(i / ((long long)out_w * out_h));
        const long long za = (z0 ? z0[z] : z) * (long long)in_h, zb = (z0 ? z1[z] : z) * (long long)in_h;
        const int ys[2] = {y0 ? y0[y] : y, y0 ? y1[y] : y};
        const int xs[2] = {x0 ? x0[x] : x, x0 ? x1[x] : x};
        float u[2];
        for (int c = 0; c < 2; ++c) {
            float t[2];
            for (int r = 0; r < 2; ++r) {
                const float a = src[(za + ys[r]) * in_w + xs[c]];
                t[r] = z0 ? lerp_rn(a, src[(zb + ys[r]) * in_w + xs[c]], zw[z]) : a;
            }
            u[c] = y0 ? lerp_rn(t[0], t[1], yw[y]) : t[0];
        }
        dst[i] = x0 ? lerp_rn(u[0], u[1], xw[x]) : u[0];
    }
}

// Keys cubic: per axis four tap indices and weights (resample.cubic_table), summed in tap
// order: ((v0 w0 + v1 w1) + v2 w2) + v3 w3.
__device__ __forceinline__ float taps4(const float* v, const float* w) {
    float acc = __fmul_rn(v[0], w[0]);
#pragma unroll
    for (int k = 1; k < 4; ++k) acc = __fadd_rn(acc, __fmul_rn(v[k], w[k]));
    return acc;
}

extern "C" __global__ void resample_cubic(const float* __restrict__ src, float* __restrict__ dst,
                                          int in_h, int in_w, int out_d, int out_h, int out_w,
                                          const int* __restrict__ zt, const float* __restrict__ zw,
                                          const int* __restrict__ yt, const float* __restrict__ yw,
                                          const int* __restrict__ xt, const float* __restrict__ xw) {
    const long long n = (long long)out_d * out_h * out_w;
    GRID_STRIDE_LOOP(i, n) {
        const int x = (int)(i % out_w);
        const int y = (int)((i / out_w) % out_h);
        const int z = (int)(i / ((long long)out_w * out_h));
        // fixed trip counts, fully unrolled: the tap arrays stay in registers (a kept axis
        // repeats its one index; only tap 0 is used)
        int zi[4], yi[4], xi[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            zi[k] = zt ? zt[4 * z + k] : z;
            yi[k] = yt ? yt[4 * y + k] : y;
            xi[k] = xt ? xt[4 * x + k] : x;
        }
        float u[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            float t[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                float v[4];
#pragma unroll
                for (int k = 0; k < 4; ++k) v[k] = src[((long long)zi[k] * in_h + yi[r]) * in_w + xi[c]];
                t[r] = zt ? taps4(v, zw + 4 * z) : v[0];
            }
            u[c] = yt ? taps4(t, yw + 4 * y) : t[0];
        }
        dst[i] = xt ? taps4(u, xw + 4 * x) : u[0];
    }
}

// ---- 2D stage -------------------------------------------------------------------------------

// preprocess.slices_to_input: bilinear resize of coronal slices (rows first, then columns, as
// resize_bilinear), already cropped. The coronal stack is a strided view of the volume
// (stride_* in elements). item n reads coronal slice src[n]; output (items, out_rows, out_cols).
// Per output row r: source rows row0[r], row1[r], weight roww[r] (host-computed, float32).
extern "C" __global__ void resize_slices(const float* __restrict__ volume, long long stride_n,
                                         long long stride_r, long long stride_c,
                                         const int* __restrict__ src, int items,
                                         const int* __restrict__ row0, const int* __restrict__ row1,
                                         const float* __restrict__ roww, int out_rows,
                                         const int* __restrict__ col0, const int* __restrict__ col1,
                                         const float* __restrict__ colw, int out_cols,
                                         float* __restrict__ out) {
    const long long n = (long long)items * out_rows * out_cols;
    GRID_STRIDE_LOOP(i, n) {
        const int c = (int)(i % out_cols);
        const int r = (int)((i / out_cols) % out_rows);
        const int item = (int)(i / ((long long)out_cols * out_rows));
        const float* s = volume + (long long)src[item] * stride_n;
        const long long ra = row0[r] * stride_r, rb = row1[r] * stride_r;
        const long long ca = col0[c] * stride_c, cb = col1[c] * stride_c;
        const float wr = roww[r], wc = colw[c];
        const float t0 = __fadd_rn(s[ra + ca], __fmul_rn(__fsub_rn(s[rb + ca], s[ra + ca]), wr));
        const float t1 = __fadd_rn(s[ra + cb], __fmul_rn(__fsub_rn(s[rb + cb], s[ra + cb]), wr));
        out[i] = __fadd_rn(t0, __fmul_rn(__fsub_rn(t1, t0), wc));
    }
}

// stages.sigmoid_ accumulated over folds: probs += 1 / (1 + exp(-logits)).
extern "C" __global__ void add_sigmoid(const float* __restrict__ logits, float* __restrict__ probs, long long n) {
    GRID_STRIDE_LOOP(i, n) {
        probs[i] = __fadd_rn(probs[i], __frcp_rn(__fadd_rn(expf(-logits[i]), 1.0f)));
    }
}

// preprocess.slices_from_output: network output (items, crop_rows, crop_cols) placed in a zero
// frame at (crop_r0, crop_c0) and resized bilinearly (rows first) to the native coronal slice,
// written into coronal slice dst[n] of the cue volume (a strided view, as resize_slices).
__device__ __forceinline__ float frame_value(const float* p, int r, int c, int r0, int c0, int rows, int cols) {
    r -= r0;
    c -= c0;
    return (r >= 0 && r < rows && c >= 0 && c < cols) ? p[(long long)r * cols + c] : 0.0f;
}

extern "C" __global__ void scatter_slices(const float* __restrict__ probs, int items, int crop_rows,
                                          int crop_cols, int crop_r0, int crop_c0,
                                          const int* __restrict__ row0, const int* __restrict__ row1,
                                          const float* __restrict__ roww, int rows,
                                          const int* __restrict__ col0, const int* __restrict__ col1,
                                          const float* __restrict__ colw, int cols,
                                          const int* __restrict__ dst, float* __restrict__ volume,
                                          long long stride_n, long long stride_r, long long stride_c) {
    const long long n = (long long)items * rows * cols;
    GRID_STRIDE_LOOP(i, n) {
        const int c = (int)(i % cols);
        const int r = (int)((i / cols) % rows);
        const int item = (int)(i / ((long long)cols * rows));
        const float* p = probs + (long long)item * crop_rows * crop_cols;
        const int ra = row0[r], rb = row1[r], ca = col0[c], cb = col1[c];
        const float wr = roww[r], wc = colw[c];
        const float a0 = frame_value(p, ra, ca, crop_r0, crop_c0, crop_rows, crop_cols);
        const float b0 = frame_value(p, rb, ca, crop_r0, crop_c0, crop_rows, crop_cols);
        const float a1 = frame_value(p, ra, cb, crop_r0, crop_c0, crop_rows, crop_cols);
        const float b1 = frame_value(p, rb, cb, crop_r0, crop_c0, crop_rows, crop_cols);
        const float t0 = __fadd_rn(a0, __fmul_rn(__fsub_rn(b0, a0), wr));
        const float t1 = __fadd_rn(a1, __fmul_rn(__fsub_rn(b1, a1), wr));
        const float v = __fadd_rn(t0, __fmul_rn(__fsub_rn(t1, t0), wc));
        volume[(long long)dst[item] * stride_n + r * stride_r + c * stride_c] = v;
    }
}

// ---- 3D stage -------------------------------------------------------------------------------

// stages.gather_windows: out (windows, 2, pd, ph, pw) from the PET and CT volumes (d, h, w);
// starts (windows x 3) are window corners in volume coordinates (negative where padded);
// voxels outside the volume get fill.
extern "C" __global__ void gather_windows(const float* __restrict__ pet, const float* __restrict__ ct,
                                          const int* __restrict__ starts, int windows,
                                          int d, int h, int w, int pd, int ph, int pw, float fill,
                                          float* __restrict__ out) {
    const long long patch = (long long)pd * ph * pw;
    const long long n = (long long)windows * 2 * patch;
    GRID_STRIDE_LOOP(i, n) {
        const long long v = i % patch;
        const int channel = (int)((i / patch) % 2);
        const int k = (int)(i / (2 * patch));
        const int z = starts[3 * k] + (int)(v / ((long long)ph * pw));
        const int y = starts[3 * k + 1] + (int)((v / pw) % ph);
        const int x = starts[3 * k + 2] + (int)(v % pw);
        const bool inside = z >= 0 && z < d && y >= 0 && y < h && x >= 0 && x < w;
        const float* src = channel == 0 ? pet : ct;
        out[i] = inside ? src[((long long)z * h + y) * w + x] : fill;
    }
}

// stages.accumulate for ONE window: acc[box] += logits * weights over the part of the window
// inside the volume (corner z0, y0, x0 in volume coordinates). One launch per window keeps
// the sum order of the host path (windows overlap, so a batch in one launch would race).
// With logits == NULL it adds the weights alone (stages.weight_sum).
extern "C" __global__ void accumulate_window(float* __restrict__ acc, const float* __restrict__ logits,
                                             const float* __restrict__ weights, int z0, int y0, int x0,
                                             int d, int h, int w, int pd, int ph, int pw) {
    const long long n = (long long)pd * ph * pw;
    GRID_STRIDE_LOOP(i, n) {
        const int z = z0 + (int)(i / ((long long)ph * pw));
        const int y = y0 + (int)((i / pw) % ph);
        const int x = x0 + (int)(i % pw);
        if (z < 0 || z >= d || y < 0 || y >= h || x < 0 || x >= w) continue;
        const float term = logits ? __fmul_rn(logits[i], weights[i]) : weights[i];
        float* a = acc + ((long long)z * h + y) * w + x;
        *a = __fadd_rn(*a, term);
    }
}

// ---- fusion ---------------------------------------------------------------------------------

// The L2SNet fusion of one fold, fused with the blend, by the host's rule (postprocess.fuse_paper):
//   p = sigmoid(acc / wsum) (0 where wsum == 0); mask = p > (cue > cue_switch ? t_low : t_high)
// The decision is on p, as on the host, so both executors apply one rule; they can differ only
// where expf and numpy's exp round p differently and p lies within that rounding of a threshold.
extern "C" __global__ void fuse_threshold(const float* __restrict__ acc,
                                          const float* __restrict__ wsum,
                                          const float* __restrict__ cue,
                                          float* __restrict__ p,
                                          unsigned char* __restrict__ mask,
                                          long long n,
                                          float cue_switch,
                                          float t_low,
                                          float t_high) {
    GRID_STRIDE_LOOP(i, n) {
        const float prob = wsum[i] > 0.0f
            ? __frcp_rn(__fadd_rn(expf(-__fdiv_rn(acc[i], wsum[i])), 1.0f)) : 0.0f;
        mask[i] = prob > (cue[i] > cue_switch ? t_low : t_high) ? 1 : 0;
        if (p) p[i] = prob;
    }
}

// Fold ensembles (stages.run_seg3d): psum += sigmoid(acc / wsum), 0 where wsum == 0.
extern "C" __global__ void add_probability(const float* __restrict__ acc, const float* __restrict__ wsum,
                                           float* __restrict__ psum, long long n) {
    GRID_STRIDE_LOOP(i, n) {
        if (wsum[i] > 0.0f) {
            const float logit = __fdiv_rn(acc[i], wsum[i]);
            psum[i] = __fadd_rn(psum[i], __frcp_rn(__fadd_rn(expf(-logit), 1.0f)));
        }
    }
}

// postprocess.fuse_paper on the fold mean: p = psum / folds in place; mask = p > threshold.
extern "C" __global__ void threshold_mean(float* __restrict__ p, const float* __restrict__ cue,
                                          unsigned char* __restrict__ mask, long long n, float folds,
                                          float cue_switch, float t_low, float t_high) {
    GRID_STRIDE_LOOP(i, n) {
        const float mean = __fdiv_rn(p[i], folds);
        p[i] = mean;
        mask[i] = mean > (cue[i] > cue_switch ? t_low : t_high) ? 1 : 0;
    }
}
