// The candidate pass of recommend_batch on a large catalogue: instead of writing every score, a
// row keeps only the items that can still be in its top k, then scores those exactly.
//
//   1. tau: the (k + m)-th best exact score over a strided subset of the items (m: the row's
//      excluded and boosted items), a lower bound of the row's k-th best exact score;
//   2. collect: bf16 tensor-core scores of every item (never stored), keeping each item whose
//      score plus its error bound reaches tau;
//   3. rescore: the kept items' exact float32 scores (the same FMA chain as the full pass), the
//      row's exclusions removed, sorted, the top k written.
// Every item of the exact top k passes step 2, so the answer is the full pass's, bit for bit. A
// row with no threshold or more candidates than kCandidateCap is flagged for the full pass.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hrnn::cuda {

// |bf16 product sum - float32 FMA chain| <= kApproxError * |h| * |o|: each product's two bf16
// roundings (2u + u^2 = 0.00783, u = 2^-8) plus both float32 sums (the FMA chain's 512 * 2^-24 and
// the tensor cores' truncating accumulation, about 512 * 2^-23, for H <= 512): 0.0079 < 0.0085.
constexpr float kApproxError = 0.0085f;
constexpr int kCandidateCap = 4096;  // a power of two: the rescoring sorts up to this many in place
static_assert((kCandidateCap & (kCandidateCap - 1)) == 0, "kCandidateCap must be a power of two");
constexpr int kMaxCandidateHidden = 512;
constexpr int64_t kCandidateMinItems = 1 << 15;  // below this, writing every score costs little
constexpr int kMaxMasked = 128;  // rows with more excluded or boosted items are scored in full

inline int padded_hidden(int H) { return (H + 15) / 16 * 16; }

// dst [rows x KP] = src [rows x H] in bf16, zero padded; norms (if not null) = scale * |row|_2,
// rounded up.
void to_bf16_rows(cudaStream_t s, const float* src, int64_t rows, int H, int KP, __nv_bfloat16* dst, float* norms,
                  float scale);
// dst[j] = src[j * stride], j < n_out.
void gather_strided(cudaStream_t s, const float* src, int64_t n_out, int stride, float* dst);
// tau[r] = sub_top[r * kp + k + m_r - 1] (m_r = mask_off[r + 1] - mask_off[r]); +inf where that
// score is missing (the row is then answered by the full pass).
void row_thresholds(cudaStream_t s, const float* sub_top, int64_t rows, int kp, int k, const int32_t* mask_off,
                    float* tau);
// Whether collect_candidates can run at this padded hidden size on the current device (shared memory).
bool collect_fits(int KP);
// For rows [0, M) of H16 (scaled norms hnorm, thresholds tau) over all N items of O16 (norms onorm,
// bias): counts[r] += kept items, cand[r * cap + i] = the first cap of them (any order).
void collect_candidates(cudaStream_t s, const __nv_bfloat16* O16, const float* bias, const float* onorm, int64_t N,
                        const __nv_bfloat16* H16, const float* hnorm, const float* tau, int M, int KP, int cap,
                        int32_t* counts, int32_t* cand);
// Each row's top k of its candidates by exact score (mask_items[mask_off[r] .. mask_off[r + 1]),
// sorted, never returned), padded with -1 / -inf; need_full[r] = 1 where the row overflowed or had
// no threshold (its outputs are then left unwritten).
void rescore_topk(cudaStream_t s, const float* O, const float* bias, int H, const float* hs, int M,
                  const int32_t* counts, const int32_t* cand, int cap, const float* tau, const int32_t* mask_off,
                  const int32_t* mask_items, int k, int32_t* out_items, float* out_scores, uint8_t* need_full);

}  // namespace hrnn::cuda
