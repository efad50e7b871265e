// Argument checks shared by every native GEMM launcher (CPU and GPU).
#pragma once

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {

// a (..., M, K), b (..., K, N), out (..., M, N), bias null or (..., M, N):
// well-formed views of one ndim and identical batch sizes (broadcast first);
// a float32/float16/bfloat16, b a's dtype, out and bias a's dtype or float32.
Status validate_gemm(const TensorView& a, const TensorView& b, const TensorView& out,
                     const TensorView* bias);

}  // namespace hetero
