// CPU GEMM: out = alpha * (a @ b) + beta * bias, batched and strided.
#pragma once

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace cpu {

// a (..., M, K) @ b (..., K, N) -> out (..., M, N); bias (..., M, N) or null.
// All views share one ndim (2..kMaxDims) and identical batch sizes (already
// broadcast by the caller; batch strides may be 0). Any element strides.
// a, b: same dtype, float32/float16/bfloat16. out, bias: a's dtype or float32.
// Accumulates in float32 and rounds once into out. The bias term is skipped
// entirely (BLAS-style: NaN/inf in bias do not leak) when bias is null or
// float(beta) == 0. Runs on up to num_threads threads. Never throws; errors
// come back as a Status.
Status gemm(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
            double alpha, double beta, int num_threads);

}  // namespace cpu
}  // namespace hetero
