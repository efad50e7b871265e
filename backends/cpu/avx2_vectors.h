// What the AVX2 kernel files share: widening vector loads and a horizontal
// sum, and the small-M kernels (kernels_avx2_small_m.cpp) that
// kernels_avx2.cpp puts in its KernelSet. Include only from files compiled
// with -mavx2 -mfma -mf16c, on x86-64.
#pragma once

#include <immintrin.h>

#include "kernels.h"

namespace hetero {
namespace cpu {
namespace avx2 {

// 8 consecutive elements widened to float32. bf16 -> fp32 is a 16-bit shift;
// vcvtph2ps converts fp16 exactly, subnormals included.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const BFloat16* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline __m256 load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float horizontal_sum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

// The KernelSet entries of kernels.h, for this ISA.
void small_m_dot(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                 int64_t rows, float* c, int64_t ldc, bool accumulate);
void small_m_axpy(const MatrixRef& b, int64_t depth, int64_t cols, const float* a, int64_t lda,
                  int64_t rows, float* c, int64_t ldc, bool accumulate);
void order_dot_rows(float* a, int64_t rows, int64_t depth, int64_t lda, DType b_dtype);

}  // namespace avx2
}  // namespace cpu
}  // namespace hetero
