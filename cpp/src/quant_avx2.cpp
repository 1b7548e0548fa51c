// AVX2 + FMA build of the reduced-precision scoring kernels (compiled with -mavx2 -mfma).
#define HRNN_QUANT_SUFFIX avx2
#define HRNN_QUANT_AVX2 1
#include "quant_kernels.inc"
