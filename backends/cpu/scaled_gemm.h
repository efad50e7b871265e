// CPU scaled GEMM: out = (a · scale_a) @ (b · scale_b) + bias on byte-coded
// inputs (float8, int8), with torch._scaled_mm's meaning.
#pragma once

#include <cstdint>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace cpu {

// How the scales apply (python/hetero/ops/scaled_gemm/api.py): tensor-wise
// (scale_a, scale_b (1, 1)), row-wise (scale_a (M, 1), scale_b (1, N)) or
// block-wise (scale_a (M, K/128), scale_b (K/128, ceil(N/128)), K % 128 == 0).
enum class ScaleRecipe : int32_t { tensor = 0, row = 1, block = 2 };

// a (M, K) and b (K, N) of one byte-coded dtype, any strides; scales float32
// of the recipe's shapes, any strides, or both null for an int8 call with an
// int32 out (torch._int_mm: the exact sums); bias null or (N,) float32, fp16
// or bf16; out (M, N) float32, fp16, bf16 (or int32, as said). Products are
// exact; they sum in float32 (int8: exactly, into int32), are scaled once per
// output (per 128-deep block for the block recipe) and round once into out.
// Runs on up to num_threads threads. Never throws; errors come back as a Status.
Status scaled_gemm(const TensorView& a, const TensorView& b, const TensorView* scale_a,
                   const TensorView* scale_b, ScaleRecipe recipe, const TensorView* bias,
                   const TensorView& out, int num_threads);

}  // namespace cpu
}  // namespace hetero
