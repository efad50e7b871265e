// The pieces of one CPU GEMM call that every driver shares: the operands of
// the call and of one batch element, and the epilogue that turns a float32
// accumulator tile into out = alpha * acc + beta * bias. Internal to
// backends/cpu (gemm.cpp, gemm_small_m.cpp).
#pragma once

#include <cstdint>

#include "hetero/dtype.h"
#include "hetero/tensor_view.h"
#include "kernels.h"

namespace hetero {
namespace cpu {

// bias is float32 or a's dtype. It is read only in the O(M*N) epilogue, so a
// run-time dtype switch there is cheaper than more template instantiations.
struct BiasMatrix {
  const void* data;  // null: no bias term at all
  DType dtype;
  int64_t row_stride;
  int64_t col_stride;

  float at(int64_t i, int64_t j) const {
    const int64_t off = i * row_stride + j * col_stride;
    switch (dtype) {
      case DType::float16: return to_float(static_cast<const Half*>(data)[off]);
      case DType::bfloat16: return to_float(static_cast<const BFloat16*>(data)[off]);
      default: return static_cast<const float*>(data)[off];
    }
  }
};

struct OutMatrix {
  void* data;
  DType dtype;
  int64_t row_stride;
  int64_t col_stride;
};

// One batch element: plain 2-D operands.
struct Gemm2d {
  MatrixRef a, b;
  OutMatrix out;
  BiasMatrix bias;
};

// Everything about the call that does not change per batch element.
struct Problem {
  const TensorView *a, *b, *out, *bias;
  int64_t M, N, K, batches;
  float alpha, beta;

  Gemm2d element(int64_t flat) const {
    const int32_t nb = a->ndim - 2;
    int64_t off_a = 0, off_b = 0, off_out = 0, off_bias = 0;
    for (int32_t d = nb - 1; d >= 0; --d) {
      const int64_t idx = flat % a->sizes[d];
      flat /= a->sizes[d];
      off_a += idx * a->strides[d];
      off_b += idx * b->strides[d];
      off_out += idx * out->strides[d];
      if (bias != nullptr) off_bias += idx * bias->strides[d];
    }
    // With K == 0, a and b are empty and may legitimately be null: never
    // offset a null pointer (they are never read then).
    Gemm2d g;
    g.a = {K > 0 ? a->element_ptr(off_a) : nullptr, a->dtype, a->strides[nb], a->strides[nb + 1]};
    g.b = {K > 0 ? b->element_ptr(off_b) : nullptr, b->dtype, b->strides[nb], b->strides[nb + 1]};
    g.out = {out->element_ptr(off_out), out->dtype, out->strides[nb], out->strides[nb + 1]};
    g.bias = bias == nullptr ? BiasMatrix{nullptr, DType::float32, 0, 0}
                             : BiasMatrix{bias->element_ptr(off_bias), bias->dtype,
                                          bias->strides[nb], bias->strides[nb + 1]};
    return g;
  }
};

// ------------------------------------------------------------------ epilogue

template <typename Out>
void store_block(const float* c, int64_t ldc, const Gemm2d& g, int64_t i0, int64_t j0,
                 int64_t rows, int64_t cols, float alpha, float beta) {
  Out* out = static_cast<Out*>(g.out.data) + i0 * g.out.row_stride + j0 * g.out.col_stride;
  for (int64_t i = 0; i < rows; ++i) {
    const float* ci = c + i * ldc;
    Out* oi = out + i * g.out.row_stride;
    if (g.bias.data == nullptr) {
      for (int64_t j = 0; j < cols; ++j) oi[j * g.out.col_stride] = from_float<Out>(alpha * ci[j]);
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        const float v = alpha * ci[j] + beta * g.bias.at(i0 + i, j0 + j);
        oi[j * g.out.col_stride] = from_float<Out>(v);
      }
    }
  }
}

inline void store(const float* c, int64_t ldc, const Gemm2d& g, int64_t i0, int64_t j0, int64_t rows,
           int64_t cols, float alpha, float beta) {
  if (g.bias.data == nullptr && g.out.col_stride == 1) {  // the common case, vectorised
    char* out = static_cast<char*>(g.out.data) +
                (i0 * g.out.row_stride + j0) * element_size(g.out.dtype);
    return active_kernels().store_rows(c, ldc, rows, cols, alpha, out, g.out.dtype, g.out.row_stride);
  }
  switch (g.out.dtype) {
    case DType::float16: store_block<Half>(c, ldc, g, i0, j0, rows, cols, alpha, beta); break;
    case DType::bfloat16: store_block<BFloat16>(c, ldc, g, i0, j0, rows, cols, alpha, beta); break;
    default: store_block<float>(c, ldc, g, i0, j0, rows, cols, alpha, beta); break;
  }
}

}  // namespace cpu
}  // namespace hetero
