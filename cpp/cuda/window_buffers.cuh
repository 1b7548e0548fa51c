// The device work space of one window, as kernels take it (by value). Per-(t, b) arrays are
// [T*B rows x width], row t*B + b; per-step arrays are reused by every step.
#pragma once
#include <cstdint>

namespace hrnn::cuda {

constexpr int kRepeatWidth = 16;  // kRepeatCols: rV's columns, 8 by position then 8 by age

struct WindowBuffers {
  int T, B, S, C, H;
  int64_t TB;
  // The forward pass [T*B x H], as StepCache: the state entering the step (UPREV, HPREV), the user
  // GRU (UR, UZ, UN, UHR), U, SU = s, the gate G, HTIL, the session GRU (SR, SZ, SN, SHR) and its output
  // HNEW; X the input vectors; HOUT the (dropped-out) output of lanes with a target, else 0.
  float *X, *UPREV, *HPREV, *UR, *UZ, *UN, *UHR, *U, *SU, *G, *HTIL, *SR, *SZ, *SN, *SHR, *HNEW, *HOUT;
  // The backward pass: d loss / d HNEW from the output layer, d X, and the pre-activation gradients
  // that the dense blocks' gradients are formed from at the end of the window.
  float *DHLOSS, *DX, *DGPRE, *DS, *DU0;  // [T*B x H]
  float *DA_S, *DA_U;                      // [T*B x 3H]: the session / user GRU's (r, z, n) parts
  float* PHI;                              // [T*B x 2] time features
  float* GHV;                              // [T*B x 16] d loss / d (h . rV[:, j]): the repeat terms
  float* LOSS;                             // [T*B] weight * loss
  // Per step.
  float *A_U, *A_S;                                             // [B x 3H] GRU pre-activations
  float *UCUR, *HCUR, *DHC, *DUC, *DHT, *DHR, *DHP, *DUO, *MASK;  // [B x H]
  float* OC;                                                    // [C x H] the candidate rows
  float *CB, *CLQ;                                              // [C] their biases and log q
  float* R;                                                     // [B x C] scores, then d loss / d score
  float* HV;                                                    // [B x 16] h_out . rV
  float *EXT_S, *EXT_G;                                         // [E] the extra columns' scores, gradients
  float *REC_U, *REC_H;                                         // [T*B x H] lane states (tests), or null
};

}  // namespace hrnn::cuda
