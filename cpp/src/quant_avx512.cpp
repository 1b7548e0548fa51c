// AVX-512 VNNI build of the reduced-precision scoring kernels (compiled with -mavx512f -mavx512vnni -mfma).
#define HRNN_QUANT_SUFFIX avx512
#define HRNN_QUANT_AVX512 1
#include "quant_kernels.inc"
