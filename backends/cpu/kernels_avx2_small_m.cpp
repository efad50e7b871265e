// AVX2 kernels for decode-shaped GEMMs (kernels.h small_m_dot, small_m_axpy,
// order_dot_rows). This file is compiled with -mavx2 -mfma -mf16c and runs
// only where kernels_select.cpp found those features.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <cstring>
#include <type_traits>

#include "avx2_vectors.h"
#include "pack_generic.h"

namespace hetero {
namespace cpu {
namespace avx2 {
namespace {

// Decode-shaped GEMMs: a has a few rows, b is read once straight from its
// storage (no Bp), bf16/fp16 widened in registers. Tiles are sized by the
// rows they get so that the accumulators and operands fit the 16 ymm
// registers: 12 accumulators for 2-4 rows, 8 or 12 for one. Every loop over
// tile indices is unrolled up front (UNROLL): only then does GCC keep the
// accumulator arrays in registers instead of storing them every iteration.
#define UNROLL _Pragma("GCC unroll 16")

// bf16 weights in pairs: one 256-bit load holds 16 bf16, the 32-bit lane l
// holding elements 2l (low half) and 2l + 1. Shifting each lane left by 16
// gives the even elements as float32 and clearing its low half the odd ones:
// 2 integer ops per 16 weights where load8 spends 2 per 8, ops that compete
// with the FMAs for ports (Zen 1). A 1-row GEMV reads 20-25% faster. So a
// is kept as whole groups of 16 with their 8 even, then 8 odd elements; the
// depth % 16 after the last whole group stays in order.
constexpr int64_t kPairGroup = 16;

// Lane l of acc[i][j] sums the products with k = l (mod 8); for bf16, in the
// whole groups of 16 it sums k = 2l and 2l + 1 (mod 16) instead. The last
// depth % 8 products go through zero-padded vectors, so each element is
// summed the same way by every tile shape.
template <typename In, int IR, int JC>
void dot_tile(const float* a, int64_t lda, const In* w, int64_t ldw, int64_t depth, float* c,
              int64_t ldc, bool accumulate) {
  // Each column streams a row of w, and the hardware prefetcher starts cold
  // on each new page: the next tile's rows are asked into L2 a line at a time
  // at the pace of this tile's.
  auto prefetch_next_tile = [&](int64_t k) {  // once per 64 bytes of a row: k steps are 16-32 bytes
    if ((k * static_cast<int64_t>(sizeof(In))) % 64 != 0) return;
    UNROLL for (int j = 0; j < JC; ++j) _mm_prefetch(reinterpret_cast<const char*>(w + (j + JC) * ldw + k), _MM_HINT_T1);
  };
  __m256 acc[IR][JC];
  UNROLL for (int i = 0; i < IR; ++i) {
    UNROLL for (int j = 0; j < JC; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  if constexpr (std::is_same_v<In, BFloat16>) {
    const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (; k + kPairGroup <= depth; k += kPairGroup) {
      prefetch_next_tile(k);
      UNROLL for (int j = 0; j < JC; ++j) {
        const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * ldw + k));
        const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
        const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(pairs, high_half));
        UNROLL for (int i = 0; i < IR; ++i) {
          acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + k), even, acc[i][j]);
          acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + k + 8), odd, acc[i][j]);
        }
      }
    }
  }
  const int64_t body = depth & ~int64_t{7};
  for (; k < body; k += 8) {
    prefetch_next_tile(k);
    __m256 x[IR];
    UNROLL for (int i = 0; i < IR; ++i) x[i] = _mm256_loadu_ps(a + i * lda + k);
    UNROLL for (int j = 0; j < JC; ++j) {
      const __m256 wj = load8(w + j * ldw + k);
      UNROLL for (int i = 0; i < IR; ++i) acc[i][j] = _mm256_fmadd_ps(x[i], wj, acc[i][j]);
    }
  }
  if (body < depth) {
    alignas(32) float x_tail[IR][8] = {};
    In w_tail[JC][8] = {};  // value-initialised: +0 in every dtype
    for (int64_t k = body; k < depth; ++k) {
      UNROLL for (int i = 0; i < IR; ++i) x_tail[i][k - body] = a[i * lda + k];
      UNROLL for (int j = 0; j < JC; ++j) w_tail[j][k - body] = w[j * ldw + k];
    }
    UNROLL for (int j = 0; j < JC; ++j) {
      const __m256 wj = load8(w_tail[j]);
      UNROLL for (int i = 0; i < IR; ++i) acc[i][j] = _mm256_fmadd_ps(_mm256_load_ps(x_tail[i]), wj, acc[i][j]);
    }
  }
  UNROLL for (int i = 0; i < IR; ++i) {
    UNROLL for (int j = 0; j < JC; ++j) {
      const float sum = horizontal_sum(acc[i][j]);
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
    }
  }
}

template <typename In, int IR, int JC>
void dot_rows(const float* a, int64_t lda, const In* w, int64_t ldw, int64_t depth, int64_t cols,
              float* c, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + JC <= cols; j += JC) dot_tile<In, IR, JC>(a, lda, w + j * ldw, ldw, depth, c + j, ldc, accumulate);
  for (; j < cols; ++j) dot_tile<In, IR, 1>(a, lda, w + j * ldw, ldw, depth, c + j, ldc, accumulate);
}

template <typename In>
void small_m_dot_typed(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                       int64_t rows, float* c, int64_t ldc, bool accumulate) {
  const In* w = static_cast<const In*>(b.data);  // b(k, j) = w[j * ldw + k]
  const int64_t ldw = b.col_stride;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {  // x via FMA memory operands: 12 + 3 + 1 registers
    dot_rows<In, 4, 3>(a + i * lda, lda, w, ldw, depth, cols, c + i * ldc, ldc, accumulate);
  }
  if (rows - i == 3) dot_rows<In, 3, 4>(a + i * lda, lda, w, ldw, depth, cols, c + i * ldc, ldc, accumulate);
  if (rows - i == 2) dot_rows<In, 2, 6>(a + i * lda, lda, w, ldw, depth, cols, c + i * ldc, ldc, accumulate);
  if (rows - i == 1) dot_rows<In, 1, 8>(a + i * lda, lda, w, ldw, depth, cols, c + i * ldc, ldc, accumulate);
}

// acc[i][v] holds columns 8v..8v+7 of row i; k is summed in order from 0
// with one rounding per FMA, which the scalar fmaf of the last cols % 8
// columns matches exactly, and c is added last.
template <typename In, int IR, int JV>
void axpy_tile(const float* a, int64_t lda, const In* b, int64_t ldb, int64_t depth, float* c,
               int64_t ldc, bool accumulate) {
  __m256 acc[IR][JV];
  UNROLL for (int i = 0; i < IR; ++i) {
    UNROLL for (int v = 0; v < JV; ++v) acc[i][v] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < depth; ++k) {
    const In* bk = b + k * ldb;
    if constexpr (IR * JV + JV + 1 <= 16) {  // hold the JV b vectors, one a value at a time
      __m256 bv[JV];
      UNROLL for (int v = 0; v < JV; ++v) bv[v] = load8(bk + 8 * v);
      UNROLL for (int i = 0; i < IR; ++i) {
        const __m256 aik = _mm256_broadcast_ss(a + i * lda + k);
        UNROLL for (int v = 0; v < JV; ++v) acc[i][v] = _mm256_fmadd_ps(aik, bv[v], acc[i][v]);
      }
    } else {  // hold the IR a values, one b vector at a time
      __m256 ak[IR];
      UNROLL for (int i = 0; i < IR; ++i) ak[i] = _mm256_broadcast_ss(a + i * lda + k);
      UNROLL for (int v = 0; v < JV; ++v) {
        const __m256 bv = load8(bk + 8 * v);
        UNROLL for (int i = 0; i < IR; ++i) acc[i][v] = _mm256_fmadd_ps(ak[i], bv, acc[i][v]);
      }
    }
  }
  UNROLL for (int i = 0; i < IR; ++i) {
    UNROLL for (int v = 0; v < JV; ++v) {
      float* ci = c + i * ldc + 8 * v;
      _mm256_storeu_ps(ci, accumulate ? _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][v]) : acc[i][v]);
    }
  }
}

template <typename In, int IR, int JV>
void axpy_rows(const float* a, int64_t lda, const In* b, int64_t ldb, int64_t depth, int64_t cols,
               float* c, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + 8 * JV <= cols; j += 8 * JV) axpy_tile<In, IR, JV>(a, lda, b + j, ldb, depth, c + j, ldc, accumulate);
  for (; j + 8 <= cols; j += 8) axpy_tile<In, IR, 1>(a, lda, b + j, ldb, depth, c + j, ldc, accumulate);
  for (; j < cols; ++j) {
    for (int i = 0; i < IR; ++i) {
      float sum = 0.0f;
      for (int64_t k = 0; k < depth; ++k) sum = __builtin_fmaf(a[i * lda + k], to_float(b[k * ldb + j]), sum);
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
    }
  }
}

template <typename In>
void small_m_axpy_typed(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                        int64_t rows, float* c, int64_t ldc, bool accumulate) {
  const In* bp = static_cast<const In*>(b.data);
  const int64_t ldb = b.row_stride;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {
    axpy_rows<In, 4, 3>(a + i * lda, lda, bp, ldb, depth, cols, c + i * ldc, ldc, accumulate);
  }
  if (rows - i == 3) axpy_rows<In, 3, 4>(a + i * lda, lda, bp, ldb, depth, cols, c + i * ldc, ldc, accumulate);
  if (rows - i == 2) axpy_rows<In, 2, 6>(a + i * lda, lda, bp, ldb, depth, cols, c + i * ldc, ldc, accumulate);
  if (rows - i == 1) axpy_rows<In, 1, 12>(a + i * lda, lda, bp, ldb, depth, cols, c + i * ldc, ldc, accumulate);
}
#undef UNROLL

}  // namespace

void order_dot_rows(float* a, int64_t rows, int64_t depth, int64_t lda, DType b_dtype) {
  if (b_dtype != DType::bfloat16) return;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k + kPairGroup <= depth; k += kPairGroup) {
      float* group = a + i * lda + k;
      float natural[kPairGroup];
      std::memcpy(natural, group, sizeof natural);
      for (int64_t l = 0; l < kPairGroup / 2; ++l) {
        group[l] = natural[2 * l];
        group[kPairGroup / 2 + l] = natural[2 * l + 1];
      }
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

}  // namespace avx2
}  // namespace cpu
}  // namespace hetero

#endif  // x86-64
