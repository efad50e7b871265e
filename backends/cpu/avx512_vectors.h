// What the AVX-512 attention kernel files share (kernels_avx512_paged.cpp,
// kernels_amx_attention.cpp): the vector exp2 of the online softmax. Include
// only from files compiled with -mavx512f -mfma, on x86-64.
#pragma once

#include <immintrin.h>

#include "kernels.h"

namespace hetero {
namespace cpu {
namespace avx512 {

// 2^t for t <= 0, exactly 0 at or below -127 (masked scores are -inf):
// kernels.h's kExp2Poly at 512 bits.
inline __m512 exp2_nonpositive(__m512 t) {
  t = _mm512_max_ps(_mm512_set1_ps(-127.0f), t);
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[i]));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

}  // namespace avx512
}  // namespace cpu
}  // namespace hetero
