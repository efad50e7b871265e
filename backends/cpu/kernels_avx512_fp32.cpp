// The avx512 set's fp32 GEMM (kernels.h FloatGemm): packing into slivers of
// 12 rows / 32 columns (pack_vector.h) and a 12 x 32 micro-kernel in zmm
// registers. The amx
// set keeps it for float32 and fp16 (AMX multiplies bf16 only). This file
// alone is compiled with the avx512 flags of kernels_avx512.cpp.
//
// Why this tile: CPUs with two 512-bit FMA units (Intel server cores) run
// twice the flops per cycle of the avx2 set's 6 x 16 tile in ymm registers;
// CPUs that split a 512-bit FMA in two (AMD Zen 4) run the same flops in half
// the instructions. Per k, two B vectors and twelve broadcast A values feed
// 24 FMAs into 24 independent accumulators, enough to cover the FMA latency
// (4 cycles) on two ports: 27 of the 32 zmm registers.
//
// Blocks: MC = 144 (12 slivers), KC = 256, NC = 512 as the 6 x 16 sets, so
// both sum every element over the same blocks of k in the same order and agree
// bit for bit. A KC x 32 B sliver (32 KiB) stays in L1 next to the A sliver
// (12 KiB) streamed past it.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "avx512_vectors.h"
#include "pack_vector.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kRows = 12, kCols = 32;
// Above 32 rows this tile beats the small-M products. Between 17 and 32 it
// wins with the weight in cache, but with a Linear weight read from memory,
// as a served model reads it, the two are close, so those calls keep the path
// that reads the weight once (measured on an AMX Xeon: bench/RESULTS.md).
constexpr int64_t kSmallMRows = 32;
static_assert(kFloatMC % kRows == 0 && kFloatNC % kCols == 0, "blocks must be whole slivers");

using avx512::load16;
using avx512::transpose16;

// ---------------------------------------------------------------- packing

// pack_vector.h on 16-lane zmm registers (32-bit words, so transpose16 applies).
struct Zmm {
  static constexpr int64_t kLanes = 16;
  using Reg = __m512i;
  template <typename In>
  static __m512i load(const In* p) { return _mm512_castps_si512(load16(p)); }
  static __m512i zero() { return _mm512_setzero_si512(); }
  static void store(float* p, __m512i r) { _mm512_storeu_si512(p, r); }
  template <int64_t n>
  static void store_first(float* p, __m512i r) {
    _mm512_mask_storeu_epi32(p, static_cast<__mmask16>((1u << n) - 1), r);
  }
  static void transpose(__m512i r[16]) { transpose16(r); }
};
using Packing = VectorPacking<Zmm, kRows, kCols>;

// ---------------------------------------------------------------- micro-kernel

// The accumulators are named variables, not an array: GCC keeps an array
// that is written on several paths in memory, spilling every FMA.
#define HETERO_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
// A's value (i, k) is a[i * a_row + k * a_k]: packed (1, kRows), or row-major
// (lda, 1) for micro_rows; the packed instance compiles to constant offsets.
template <bool kPackedA>
inline void micro_tile(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                       bool accumulate) {
  const int64_t a_row = kPackedA ? 1 : lda, a_k = kPackedA ? kRows : 1;
#define DECLARE(r) __m512 c##r##0, c##r##1;
  HETERO_ROWS(DECLARE)
#undef DECLARE
  int64_t k = 0;
  if (accumulate) {
#define LOAD(r) c##r##0 = _mm512_loadu_ps(c + r * ldc), c##r##1 = _mm512_loadu_ps(c + r * ldc + 16);
    HETERO_ROWS(LOAD)
#undef LOAD
  } else if (depth > 0) {  // seed with the first product: keeps -0 exact
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    __m512 ar;
#define SEED(r) ar = _mm512_set1_ps(a[r * a_row]), c##r##0 = _mm512_mul_ps(ar, b0), c##r##1 = _mm512_mul_ps(ar, b1);
    HETERO_ROWS(SEED)
#undef SEED
    k = 1;
  } else {
#define ZERO(r) c##r##0 = c##r##1 = _mm512_setzero_ps();
    HETERO_ROWS(ZERO)
#undef ZERO
  }
  const float* ak = a + k * a_k;
  const float* bk = b + k * kCols;
  for (; k < depth; ++k, ak += a_k, bk += kCols) {
    const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
    __m512 ar;
#define STEP(r) ar = _mm512_set1_ps(ak[r * a_row]), c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0), c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1);
    HETERO_ROWS(STEP)
#undef STEP
  }
#define STORE(r) _mm512_storeu_ps(c + r * ldc, c##r##0), _mm512_storeu_ps(c + r * ldc + 16, c##r##1);
  HETERO_ROWS(STORE)
#undef STORE
}
#undef HETERO_ROWS

void micro(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  micro_tile<true>(depth, a, 0, b, c, ldc, accumulate);
}

void micro_rows(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                bool accumulate) {
  micro_tile<false>(depth, a, lda, b, c, ldc, accumulate);
}

}  // namespace

const FloatGemm* avx512_fp32_gemm() {
  static const FloatGemm gemm{kRows, kCols, kFloatMC, kFloatKC, kFloatNC, kSmallMRows, Packing::pack_a, Packing::pack_b,
                              micro, micro_rows};
  return &gemm;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX-512 path in this build

namespace hetero {
namespace cpu {
const FloatGemm* avx512_fp32_gemm() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
