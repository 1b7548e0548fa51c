// The element-wise parts of one step's forward and backward pass for all B lanes at once
// (docs/engine.md, "One step of one lane"; the CPU's step.cpp); the matrix products between them
// are gemm calls made by the window engine.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "device_model.cuh"
#include "window_buffers.cuh"
#include "window_data.cuh"

namespace hrnn::cuda {

// Forward.
// X = E[item] (0 for inactive lanes), UPREV / HPREV = the lanes' current state, PHI.
void fwd_gather(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* E, int t);
// r = sigmoid(a[0:H]), z = sigmoid(a[H:2H]), hr = r * h: A [B x 3H]; h, r, z, hr: rows of step t.
void fwd_gru_gates(cudaStream_t s, const WindowBuffers& w, const float* A, const float* h, float* r, float* z,
                   float* hr, int t);
// The user GRU's output, and U = u0 / that output / UPREV by the step's flags.
void fwd_user_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* u0, int t);
// SU = tanh(SU), G = sigmoid(G + Vg phi) (0 when fresh), HTIL.
void fwd_gate(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* Vg, int t);
// Dropout masks of the lanes with a target, drawn as the CPU engine draws them.
void fwd_dropout_mask(cudaStream_t s, const WindowBuffers& w, const WindowView& v, uint64_t seed, float keep, int t);
// The session GRU's output HNEW; active lanes move to (U, HNEW); HOUT; the recorded states.
void fwd_session_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, bool dropout, int t);

// Backward, step t, in this order with the gemm calls between them (window_engine.cu).
void bwd_session_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t);
void bwd_session_reset(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t);
void bwd_gate(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t);
void bwd_user_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t);
void bwd_user_reset(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t);
// gE[slot of the input] += DX for the active lanes of step t.
void bwd_scatter_inputs(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* gE, int t);

}  // namespace hrnn::cuda
