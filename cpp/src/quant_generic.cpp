// Portable build of the reduced-precision scoring kernels (the compiler's default instruction set).
#define HRNN_QUANT_SUFFIX generic
#include "quant_kernels.inc"
