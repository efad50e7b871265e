// CPU GEMM: out = alpha * (a @ b) + beta * bias, batched and strided.
#pragma once

#include <cstdint>

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

// out (M, N) float32 = a (M, K) @ b (K, N) for byte-coded a and b (float8,
// int8; any strides), decoded through `table` (their 256 bf16 codes) while
// packing and multiplied in bf16 pairs — or, where the set has a
// WeightStream and it applies, decoded a chunk of w's rows at a time into
// it: for scaled_gemm.cpp, on a kernel set with a DotGemm and the quantized
// decode (the caller checks). Views already validated; 2-D only.
Status gemm_decoding(const TensorView& a, const TensorView& b, const uint16_t* table,
                     const TensorView& out, int num_threads);

}  // namespace cpu
}  // namespace hetero
