// Single-precision matrix products on the device (row-major, like the CPU engine's gemm.h), with
// the epilogues the window needs: a bias per column, accumulation, and atomic accumulation into
// rows picked by an index map (gradient rows of the item tables; repeated rows add up).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace hrnn::cuda {

enum class Op { N, T };

struct Epilogue {
  const float* col_bias = nullptr;  // C[m][n] += col_bias[n]
  bool accumulate = false;          // C += product, else C = product
  bool atomic = false;              // C += product with atomicAdd (rows may repeat; splits K)
  const int32_t* row_map = nullptr;  // atomic only: product row m goes to C row row_map[m] (< 0: dropped)
};

// C[M x N] (=|+=) op(A)[M x K] . op(B)[K x N]; op(A) = A stored [M x lda] or, for Op::T, A^T with
// A stored [K x lda]; likewise op(B) = B [K x ldb] or B^T with B stored [N x ldb].
void gemm(cudaStream_t s, Op ta, Op tb, int M, int N, int K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc, const Epilogue& ep = {});

// out[n] (+)= sum over the R rows of A[r * lda + n], n < W (atomic accumulation into out).
void column_sums(cudaStream_t s, int64_t R, int W, const float* A, int64_t lda, float* out);

}  // namespace hrnn::cuda
