// AVX2 + FMA + F16C kernels: packing, the micro-kernel, the softmax loops and
// the peak loop (the small-M kernels are in kernels_avx2_small_m.cpp). These
// two files alone are compiled with -mavx2 -mfma -mf16c; nothing here runs
// unless the CPU reports those features (kernels_select.cpp), so the module
// still loads on older CPUs.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include "avx2_vectors.h"
#include "pack_vector.h"

namespace hetero {
namespace cpu {
namespace {

using avx2::horizontal_sum;
using avx2::load8;

// ---------------------------------------------------------------- packing

// In-register 8x8 transpose: r[i] lane j  ->  r[j] lane i.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// The packers: pack_vector.h on 8-lane ymm registers.
struct Ymm {
  static constexpr int64_t kLanes = 8;
  using Reg = __m256;
  template <typename In>
  static __m256 load(const In* p) { return load8(p); }
  static __m256 zero() { return _mm256_setzero_ps(); }
  static void store(float* p, __m256 r) { _mm256_storeu_ps(p, r); }
  template <int64_t n>
  static void store_first(float* p, __m256 r) {
    static_assert(n == 6, "the avx2 tile's 6 rows: a 4-lane and a 2-lane store");
    _mm_storeu_ps(p, _mm256_castps256_ps128(r));
    _mm_storel_pi(reinterpret_cast<__m64*>(p + 4), _mm256_extractf128_ps(r, 1));
  }
  static void transpose(__m256 r[8]) { transpose8(r); }
};
using Packing = VectorPacking<Ymm, kMR, kNR>;

template <typename In>
void widen_rows_typed(const MatrixRef& src, int64_t rows, int64_t depth, float* dst, int64_t ld) {
  if (src.col_stride != 1) return widen_rows_generic<In>(src, rows, depth, dst, ld);
  for (int64_t i = 0; i < rows; ++i) {
    const In* row = static_cast<const In*>(src.at(i, 0));
    float* out = dst + i * ld;
    int64_t k = 0;
    for (; k + 8 <= depth; k += 8) _mm256_storeu_ps(out + k, load8(row + k));
    for (; k < depth; ++k) out[k] = to_float(row[k]);
  }
}

void widen_rows(const MatrixRef& src, int64_t rows, int64_t depth, float* dst, int64_t ld) {
  HETERO_PACK_BY_DTYPE(widen_rows_typed, src, rows, depth, dst, ld);
}

// ---------------------------------------------------------------- micro-kernel

// 6 x 16 tile: per k, two B vectors and six broadcast A values feed 12 FMAs.
// Zen 1 and Haswell both retire at most one or two 256-bit FMAs per cycle
// with a 4-5 cycle latency, so 12 independent accumulators keep them busy.
// The accumulators are named variables, not an array: GCC keeps an array
// that is written on several paths in memory, spilling every FMA.
#define HETERO_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
// A's value (i, k) is a[i * a_row + k * a_k]: packed (1, kMR), or row-major
// (lda, 1) for micro_rows; the packed instance compiles to constant offsets.
template <bool kPackedA>
inline void micro_tile(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                       bool accumulate) {
  const int64_t a_row = kPackedA ? 1 : lda, a_k = kPackedA ? kMR : 1;
#define DECLARE(r) __m256 c##r##0, c##r##1;
  HETERO_ROWS(DECLARE)
#undef DECLARE
  int64_t k = 0;
  if (accumulate) {
#define LOAD(r) c##r##0 = _mm256_loadu_ps(c + r * ldc), c##r##1 = _mm256_loadu_ps(c + r * ldc + 8);
    HETERO_ROWS(LOAD)
#undef LOAD
  } else if (depth > 0) {  // seed with the first product: keeps -0 exact
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 ar;
#define SEED(r) ar = _mm256_broadcast_ss(a + r * a_row), c##r##0 = _mm256_mul_ps(ar, b0), c##r##1 = _mm256_mul_ps(ar, b1);
    HETERO_ROWS(SEED)
#undef SEED
    k = 1;
  } else {
#define ZERO(r) c##r##0 = c##r##1 = _mm256_setzero_ps();
    HETERO_ROWS(ZERO)
#undef ZERO
  }
  const float* ak = a + k * a_k;
  const float* bk = b + k * kNR;
  for (; k < depth; ++k, ak += a_k, bk += kNR) {
    const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    __m256 ar;
#define STEP(r) ar = _mm256_broadcast_ss(ak + r * a_row), c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0), c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);
    HETERO_ROWS(STEP)
#undef STEP
  }
#define STORE(r) _mm256_storeu_ps(c + r * ldc, c##r##0), _mm256_storeu_ps(c + r * ldc + 8, c##r##1);
  HETERO_ROWS(STORE)
#undef STORE
}

void micro(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  micro_tile<true>(depth, a, 0, b, c, ldc, accumulate);
}

void micro_rows(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                bool accumulate) {
  micro_tile<false>(depth, a, lda, b, c, ldc, accumulate);
}
#undef HETERO_ROWS

// ---------------------------------------------------------------- softmax

inline float horizontal_max(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

float row_max(const float* x, int64_t n) {
  // maxps drops a NaN in its first operand, so NaNs are tracked on the side.
  __m256 m = _mm256_set1_ps(-__builtin_inff()), nan = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    m = _mm256_max_ps(m, v);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  float best = _mm256_movemask_ps(nan) ? __builtin_nanf("") : horizontal_max(m);
  for (; j < n; ++j) best = (x[j] > best || x[j] != x[j]) ? x[j] : best;
  return best;
}

// 2^t for t <= 0: t = n + f with n = round(t), |f| <= 1/2; 2^f from a
// degree-5 minimax polynomial (relative error 7.5e-8, 2 ulp as evaluated), 2^n
// put straight into the exponent bits. t is clamped at -127 first, where the
// exponent field is 0 and the product exactly 0, so masked scores (-inf) give
// 0 without a compare; t in (-127, -126) gives a subnormal or 0.
inline __m256 exp2_nonpositive(__m256 t) {
  t = _mm256_max_ps(_mm256_set1_ps(-127.0f), t);  // maxps returns its 2nd operand for NaN
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_set1_ps(kExp2Poly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[i]));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

float exp2_sum(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp2_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + j), s));
    _mm256_storeu_ps(x + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  float total = horizontal_sum(sum);
  if (j < n) {  // tail through a padded vector, same arithmetic as the body
    alignas(32) float tail[8];
    for (int i = 0; i < 8; ++i) tail[i] = j + i < n ? x[j + i] : -__builtin_inff();
    const __m256 e = exp2_nonpositive(_mm256_sub_ps(_mm256_load_ps(tail), s));
    _mm256_store_ps(tail, e);
    for (int64_t i = 0; j + i < n; ++i) x[j + i] = tail[i];
    total += horizontal_sum(e);
  }
  return total;
}

void scale(float* x, int64_t n, float a) {
  const __m256 f = _mm256_set1_ps(a);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), f));
  for (; j < n; ++j) x[j] *= a;
}

// ---------------------------------------------------------------- peak

// 12 independent FMA chains, as many as the micro-kernel keeps in flight.
// ------------------------------------------------------------------ epilogue

// 8 floats rounded to nearest even (NaN kept NaN) and stored as Out.
inline void store8(float* p, __m256 x) { _mm256_storeu_ps(p, x); }
inline void store8(Half* p, __m256 x) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}
// float_to_bfloat16 (hetero/dtype.h) on 8 lanes: add 0x7fff plus the lowest
// kept bit, keep the top half; a NaN keeps its top half with the quiet bit.
inline void store8(BFloat16* p, __m256 x) {
  const __m256i bits = _mm256_castps_si256(x), top = _mm256_srli_epi32(bits, 16);
  const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(top, _mm256_set1_epi32(1)));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
  const __m256i quiet_nan = _mm256_or_si256(top, _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  const __m256i words = _mm256_blendv_epi8(rounded, quiet_nan, nan);
  // 32 -> 16 bits: packus works within 128-bit halves; qwords 0 and 2 hold the 8 results.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(words, words), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

template <typename Out>
void store_rows_typed(const float* c, int64_t ldc, int64_t rows, int64_t cols, float alpha, Out* dst,
                      int64_t ld) {
  const __m256 scale = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < rows; ++i) {
    const float* ci = c + i * ldc;
    Out* di = dst + i * ld;
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) store8(di + j, _mm256_mul_ps(scale, _mm256_loadu_ps(ci + j)));
    for (; j < cols; ++j) di[j] = from_float<Out>(alpha * ci[j]);
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
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  volatile float sink = horizontal_sum(sum);  // keeps the loop alive
  (void)sink;
  return iterations * 12 * 8 * 2;
}

}  // namespace

const KernelSet* avx2_kernels() {
  static const FloatGemm fp32_gemm{kMR, kNR, kFloatMC, kFloatKC, kFloatNC, kFloatSmallMRows, Packing::pack_a,
                                      Packing::pack_b, micro, micro_rows};
  static const KernelSet kernels{"avx2", &fp32_gemm, widen_rows, store_rows, avx2::small_m_dot,
                                 avx2::small_m_axpy, avx2::order_dot_rows, row_max, exp2_sum, scale, fma_loop, nullptr, nullptr, nullptr,
                                 avx2_quantized_kernels()};
  return &kernels;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX2 path in this build

namespace hetero {
namespace cpu {
const KernelSet* avx2_kernels() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
