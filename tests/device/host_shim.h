// Compiles l2s_engine/cuda/kernels.cu as plain C++ for the CPU (tests only): one "thread"
// whose grid-stride loop visits every element in order; the round-to-nearest intrinsics are
// the plain IEEE float operations (built with -ffp-contract=off, so none is fused).
#include <cmath>
struct l2s_dim3 { unsigned x, y, z; };
static const l2s_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
