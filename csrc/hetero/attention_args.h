// Argument checks shared by every native attention launcher (CPU and GPU):
// every view well formed, the shapes consistent with one (B, Hq, Hkv, Sq, Sk,
// D, Dv), the dtypes allowed.
#pragma once

#include <cstdint>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {

// Sizes of one call, read from validated views.
struct AttentionShape {
  int64_t B, Hq, Hkv, Sq, Sk, D, Dv;
  int64_t group() const { return Hq / Hkv; }
  // Keys visible to query i under causal: j < i + causal_offset() + 1.
  int64_t causal_offset() const { return Sk - Sq; }
};

// Checks every view of a forward or backward call and fills `shape`.
// grads: dout, dq, dk, dv (backward only; null in forward).
Status validate_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                          const TensorView* mask, const TensorView& out, const TensorView* lse,
                          const TensorView* const grads[4], AttentionShape* shape);

}  // namespace hetero
