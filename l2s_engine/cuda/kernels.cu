// l2s-engine CUDA kernels: the ONE kernel source. Compiled ahead of time to a fatbin by
// CMakeLists.txt, or at run time by CuPy (RawModule(code=...)) when no fatbin matches.
//
// fuse_threshold: the L2SNet fusion rule on blended 3D logits.
//   p = sigmoid(acc / wsum); mask = p > (cue > cue_switch ? t_low : t_high)
// is evaluated as a comparison of logits, logit = acc / wsum > logit(t), which is the same
// rule (sigmoid is increasing) without a transcendental function: a float32 division is
// correctly rounded on the GPU and in numpy, so the mask can match a numpy reference bit for
// bit. The host passes logit(t_low) and logit(t_high) computed in float64.

extern "C" __global__ void fuse_threshold(const float* __restrict__ acc,
                                          const float* __restrict__ wsum,
                                          const float* __restrict__ cue,
                                          unsigned char* __restrict__ mask,
                                          long long n,
                                          float cue_switch,
                                          float logit_low,
                                          float logit_high) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float logit = __fdiv_rn(acc[i], wsum[i]);
        const float threshold = cue[i] > cue_switch ? logit_low : logit_high;
        mask[i] = logit > threshold ? 1 : 0;
    }
}
