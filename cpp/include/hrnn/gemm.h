// The training and scoring hot paths (small dense matrix products, softmax rows), with runtime CPU dispatch
// (AVX-512, AVX2+FMA, or portable SSE) instead of a machine-specific -march. Row-major, leading dimensions in
// floats. N must be a multiple of kGemmAlign (callers pad their buffers).
#pragma once

namespace hrnn {

constexpr int kGemmAlign = 16;

inline int pad_to_gemm(int n) { return (n + kGemmAlign - 1) / kGemmAlign * kGemmAlign; }

// C[M x N] (+)= A[M x K] . B[K x N]
void gemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             bool accumulate);
// C[M x N] (+)= A^T . B, with A stored as [K x M]
void gemm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             bool accumulate);

// Sampled softmax cross-entropy of one lane over C candidate columns (docs/engine.md): column c takes
// part when items[c] >= 0 and (c == own or items[c] != y). r: raw scores; lq: log sampling
// probabilities (zeros for no logQ correction). r[C .. C+n_extra) are the lane's extra columns: always
// included, no correction. Writes dr = scale * d ce / d r and returns ce.
float softmax_row(int C, const float* r, const float* lq, const int* items, int y, int own, float scale,
                  float* dr, int n_extra);

// x[k] = sigmoid(x[k]) / tanh(x[k]) for k < n (hrnn/fast_math.h's approximations).
void sigmoid_inplace(float* x, int n);
void tanh_inplace(float* x, int n);

// y[j] += W[j, :] . x for j in [0, J) (W row-major [J x K], any K).
void matvec_add(const float* W, int J, int K, const float* x, float* y);

// Which kernel set runs here: "avx512", "avx2" or "generic".
const char* gemm_isa();

}  // namespace hrnn
