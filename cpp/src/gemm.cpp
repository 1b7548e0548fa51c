#include "hrnn/gemm.h"

namespace hrnn {
namespace detail {
#define HRNN_DECLARE(S)                                                                                     \
  void gemm_nn_##S(int, int, int, const float*, int, const float*, int, float*, int, bool);                 \
  void gemm_tn_##S(int, int, int, const float*, int, const float*, int, float*, int, bool);                 \
  float softmax_row_##S(int, const float*, const float*, const int*, int, int, float, float*, int);          \
  void sigmoid_inplace_##S(float*, int);                                                                    \
  void tanh_inplace_##S(float*, int);                                                                       \
  void matvec_add_##S(const float*, int, int, const float*, float*);
HRNN_DECLARE(generic)
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
HRNN_DECLARE(avx2)
HRNN_DECLARE(avx512)
#endif
#undef HRNN_DECLARE
}  // namespace detail

namespace {

using Fn = void (*)(int, int, int, const float*, int, const float*, int, float*, int, bool);
using SoftmaxFn = float (*)(int, const float*, const float*, const int*, int, int, float, float*, int);
using MapFn = void (*)(float*, int);
using MatvecFn = void (*)(const float*, int, int, const float*, float*);
struct Kernels {
  Fn nn, tn;
  SoftmaxFn softmax;
  MapFn sigmoid, tanh;
  MatvecFn matvec;
  const char* isa;
};

Kernels pick() {
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    return {detail::gemm_nn_avx512, detail::gemm_tn_avx512, detail::softmax_row_avx512,
            detail::sigmoid_inplace_avx512, detail::tanh_inplace_avx512, detail::matvec_add_avx512, "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {detail::gemm_nn_avx2, detail::gemm_tn_avx2, detail::softmax_row_avx2, detail::sigmoid_inplace_avx2,
            detail::tanh_inplace_avx2, detail::matvec_add_avx2, "avx2"};
#endif
  return {detail::gemm_nn_generic, detail::gemm_tn_generic, detail::softmax_row_generic,
          detail::sigmoid_inplace_generic, detail::tanh_inplace_generic, detail::matvec_add_generic, "generic"};
}

const Kernels& kernels() {
  static const Kernels k = pick();
  return k;
}

}  // namespace

void gemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             bool accumulate) {
  kernels().nn(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             bool accumulate) {
  kernels().tn(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

float softmax_row(int C, const float* r, const float* lq, const int* items, int y, int own, float scale,
                  float* dr, int n_extra) {
  return kernels().softmax(C, r, lq, items, y, own, scale, dr, n_extra);
}

void sigmoid_inplace(float* x, int n) { kernels().sigmoid(x, n); }

void tanh_inplace(float* x, int n) { kernels().tanh(x, n); }

void matvec_add(const float* W, int J, int K, const float* x, float* y) { kernels().matvec(W, J, K, x, y); }

const char* gemm_isa() { return kernels().isa; }

}  // namespace hrnn
