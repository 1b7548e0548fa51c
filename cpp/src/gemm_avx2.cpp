// AVX2 + FMA build of the GEMM kernels (compiled with -mavx2 -mfma).
#define HRNN_VEC_WIDTH 8
#define HRNN_GEMM_SUFFIX avx2
#include "isa_kernels.inc"
