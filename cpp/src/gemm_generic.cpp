// Portable build of the GEMM kernels (the compiler's default instruction set).
#define HRNN_VEC_WIDTH 4
#define HRNN_GEMM_SUFFIX generic
#include "isa_kernels.inc"
