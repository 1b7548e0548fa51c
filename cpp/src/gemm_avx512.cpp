// AVX-512 build of the GEMM kernels (compiled with -mavx512f -mfma).
#define HRNN_VEC_WIDTH 16
#define HRNN_GEMM_SUFFIX avx512
#include "isa_kernels.inc"
