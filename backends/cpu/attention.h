// CPU flash attention: forward (with log-sum-exp) and backward.
#pragma once

#include <cstdint>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace cpu {

// out = softmax(q @ k^T * scale + mask) @ v per (batch, query head); query
// head h reads key/value head h / (Hq / Hkv).
//   q (B, Hq, Sq, D), k (B, Hkv, Sk, D), v (B, Hkv, Sk, Dv), out (B, Hq, Sq, Dv):
//     one dtype, float32/float16/bfloat16, any strides.
//   mask: null, or (B, Hq, Sq, Sk) bool (true = may attend) or additive
//     (float32 or q's dtype); stride 0 where broadcast.
//   causal: query i sees keys j <= i + Sk - Sq (bottom-right aligned).
//   lse: null, or (B, Hq, Sq) float32 receiving the natural-log log-sum-exp
//     of each row's scores (+inf for a row that sees no key).
// Rows that see no key get zeros. float32 accumulation throughout.
Status attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView* mask, bool causal, double scale, const TensorView& out,
                         const TensorView* lse, int num_threads);

// Gradients of attention_forward from the saved out and lse (scores and
// probabilities are recomputed block by block). dq, dk, dv: shapes and dtype
// of q, k, v. dk/dv sum over the query heads sharing a key/value head. The
// score gradients of all (query, key) pairs are kept between the dK/dV and
// dQ sweeps when they fit in score_memory_bytes (B * Hq * Sq * Sk floats, held
// for the calling thread's next call), and recomputed otherwise.
constexpr int64_t kDefaultScoreMemoryBytes = int64_t{32} << 20;
Status attention_backward(const TensorView& dout, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const TensorView& lse,
                          const TensorView* mask, bool causal, double scale, const TensorView& dq,
                          const TensorView& dk, const TensorView& dv, int num_threads,
                          int64_t score_memory_bytes = kDefaultScoreMemoryBytes);

}  // namespace cpu
}  // namespace hetero
