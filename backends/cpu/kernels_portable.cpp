// The portable kernels: plain loops over the packed layouts, with the
// accumulator tile in a local array the compiler can keep in vector registers
// on any target (SSE2, NEON, ...). Compiled with -ffp-contract=off, so results
// are the same on every compiler and CPU.

#include <cmath>
#include <limits>

#include "kernels.h"
#include "pack_generic.h"

namespace hetero {
namespace cpu {
namespace {

void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_a_generic, src, rows, depth, dst);
}

void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_b_generic, src, depth, cols, dst);
}

void widen_rows(const MatrixRef& src, int64_t rows, int64_t depth, float* dst, int64_t ld) {
  HETERO_PACK_BY_DTYPE(widen_rows_generic, src, rows, depth, dst, ld);
}

// A's value (i, k) is a[i * a_row + k * a_k].
inline void micro_strided(int64_t depth, const float* a, int64_t a_row, int64_t a_k, const float* b,
                          float* c, int64_t ldc, bool accumulate) {
  float acc[kMR][kNR];
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) acc[r][j] = accumulate ? c[r * ldc + j] : 0.0f;
  }
  int64_t k = 0;
  if (!accumulate && depth > 0) {  // seed with the first product: keeps -0 exact
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] = a[r * a_row] * b[j];
    }
    k = 1;
  }
  for (; k < depth; ++k) {
    const float* ak = a + k * a_k;
    const float* bk = b + k * kNR;
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] += ak[r * a_row] * bk[j];
    }
  }
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) c[r * ldc + j] = acc[r][j];
  }
}

void micro(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  micro_strided(depth, a, 1, kMR, b, c, ldc, accumulate);
}

void micro_rows(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                bool accumulate) {
  micro_strided(depth, a, lda, 1, b, c, ldc, accumulate);
}

// Same summation orders as the AVX2 kernels (8 interleaved partial sums for
// dot, k in order for axpy), written as lane loops the compiler vectorises.
template <typename In>
void small_m_dot_typed(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                       int64_t rows, float* c, int64_t ldc, bool accumulate) {
  for (int64_t j = 0; j < cols; ++j) {
    const In* w = static_cast<const In*>(b.at(0, j));  // unit stride in k
    for (int64_t i = 0; i < rows; ++i) {
      const float* x = a + i * lda;
      float lanes[8] = {};
      for (int64_t k = 0; k < depth; k += 8) {
        for (int64_t l = 0; l < 8 && k + l < depth; ++l) lanes[l] += x[k + l] * to_float(w[k + l]);
      }
      const float sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) +
                        ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
    }
  }
}

template <typename In>
void small_m_axpy_typed(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                        int64_t rows, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    if (!accumulate) {
      for (int64_t j = 0; j < cols; ++j) ci[j] = 0.0f;
    }
    for (int64_t k = 0; k < depth; ++k) {
      const In* bk = static_cast<const In*>(b.at(k, 0));  // unit stride in n
      const float aik = a[i * lda + k];
      for (int64_t j = 0; j < cols; ++j) ci[j] += aik * to_float(bk[j]);
    }
  }
}

void small_m_dot(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                 int64_t rows, float* c, int64_t ldc, bool accumulate) {
  HETERO_PACK_BY_DTYPE(small_m_dot_typed, b, depth, cols, a, lda, rows, c, ldc, accumulate);
}

void small_m_axpy(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                  int64_t rows, float* c, int64_t ldc, bool accumulate) {
  HETERO_PACK_BY_DTYPE(small_m_axpy_typed, b, depth, cols, a, lda, rows, c, ldc, accumulate);
}

void order_dot_rows(float*, int64_t, int64_t, int64_t, DType) {}  // natural order for every dtype

float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;  // NaN sticks
  return m;
}

float exp2_sum(float* x, int64_t n, float shift) {
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float t = x[j] - shift;
    x[j] = t < -126.0f ? 0.0f : std::exp2(t);
    sum += x[j];
  }
  return sum;
}

void scale(float* x, int64_t n, float a) {
  for (int64_t j = 0; j < n; ++j) x[j] *= a;
}

template <typename Out>
void store_rows_typed(const float* c, int64_t ldc, int64_t rows, int64_t cols, float alpha, Out* dst,
                      int64_t ld) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) dst[i * ld + j] = from_float<Out>(alpha * c[i * ldc + j]);
  }
}

void store_rows(const float* c, int64_t ldc, int64_t rows, int64_t cols, float alpha, void* dst,
                DType dtype, int64_t ld) {
  switch (dtype) {
    case DType::float16: return store_rows_typed(c, ldc, rows, cols, alpha, static_cast<Half*>(dst), ld);
    case DType::bfloat16: return store_rows_typed(c, ldc, rows, cols, alpha, static_cast<BFloat16*>(dst), ld);
    default: return store_rows_typed(c, ldc, rows, cols, alpha, static_cast<float*>(dst), ld);
  }
}

int64_t fma_loop(int64_t iterations) {
  float acc[kMR][kNR];
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) acc[r][j] = static_cast<float>(r + j);
  }
  for (int64_t n = 0; n < iterations; ++n) {
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] = acc[r][j] * 0.999999f + 1e-7f;
    }
  }
  float sum = 0.0f;
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) sum += acc[r][j];
  }
  volatile float sink = sum;  // keeps the loop alive
  (void)sink;
  return iterations * kMR * kNR * 2;
}

// Byte-coded inputs through their table (kernels.h QuantizedKernels).
void decode_rows(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols,
                 const uint16_t* table, uint16_t* dst, int64_t ld_dst) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < cols; ++k) dst[i * ld_dst + k] = table[src[i * ld_src + k]];
  }
}

}  // namespace

const QuantizedKernels* portable_quantized_kernels() {
  static const QuantizedKernels kernels{decode_rows, nullptr, nullptr};
  return &kernels;
}

const KernelSet& portable_kernels() {
  static const FloatGemm fp32_gemm{kMR, kNR, kFloatMC, kFloatKC, kFloatNC, kFloatSmallMRows, pack_a, pack_b, micro, micro_rows};
  static const KernelSet kernels{"portable", &fp32_gemm, widen_rows, store_rows, small_m_dot, small_m_axpy, order_dot_rows, row_max, exp2_sum, scale, fma_loop, nullptr, nullptr, nullptr, portable_quantized_kernels()};
  return kernels;
}

}  // namespace cpu
}  // namespace hetero
