// The avx512 set's Int8Stream (kernels.h): exact int8 x @ w.t() reading the
// weight w where it lies, once, on vpdpbusd (AVX512_VNNI) — the int8 form of
// kernels_avx512_bf16_stream.cpp (driven by scaled_gemm.cpp's
// run_int8_stream). Compiled with the flags of kernels_avx512_int8.cpp; used
// only where the CPU has AVX512_VNNI.
//
// vpdpbusd multiplies 4 unsigned by 4 signed bytes and adds the four products
// to an int32 lane. x is the unsigned operand: packed once per call as x + 128
// (the sign bit flipped), 32 rows per sliver, per quad of k the 32 words
// (x[i][k..k+3]); each 4-byte quad of a w row is broadcast straight from
// memory as the signed operand. Then sum (x + 128) w = x.w + 128 sum(w), and
// the row sums of w are subtracted at the end. int32 arithmetic wraps, so the
// result is x.w modulo 2^32: exact wherever x.w itself fits int32, as
// torch._int_mm's.
//
// The loop is avx512_stream.h's, in steps of a quad of k; the row sums of the
// call's rows of w are taken after it, while those rows are in cache.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include "avx512_stream.h"

namespace hetero {
namespace cpu {
namespace {

// Rows of x it serves: those of the bf16 stream (kernels_avx512_bf16_stream.cpp).
constexpr int64_t kMinRows = 20, kMaxRows = 512;

// x(i, k) = x[i * rs + k * cs] for i < rows, k < depth (a multiple of 4), as
// x + 128 in unsigned bytes: per 32-row sliver, per quad of k, 32 words. 16
// rows' words of one quad come in one gather (rows past `rows` read as zero).
void pack_x(const uint8_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth, uint8_t* dst) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t i0 = 0; i0 < rows; i0 += avx512::kSliverRows, dst += avx512::kSliverRows * depth) {
    for (int64_t h = 0; h < 2; ++h) {  // the sliver's two 16-row halves
      const int64_t first = i0 + 16 * h, n = rows - first < 16 ? rows - first : 16;
      uint8_t* out = dst + 64 * h;
      if (n <= 0) {
        for (int64_t q = 0; q < depth / 4; ++q) _mm512_storeu_si512(out + 128 * q, flip);
        continue;
      }
      const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
      if (cs == 1 && rs <= INT32_MAX / 16) {
        const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(static_cast<int32_t>(rs)));
        const uint8_t* base = x + first * rs;
        for (int64_t q = 0; q < depth / 4; ++q) {
          const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), keep, offsets, base + 4 * q, 1);
          _mm512_storeu_si512(out + 128 * q, _mm512_xor_si512(words, flip));
        }
        continue;
      }
      for (int64_t q = 0; q < depth / 4; ++q) {
        for (int64_t i = 0; i < 16; ++i) {
          for (int64_t e = 0; e < 4; ++e) {
            const uint8_t v = i < n ? x[(first + i) * rs + (4 * q + e) * cs] : 0;
            out[128 * q + 4 * i + e] = static_cast<uint8_t>(v ^ 0x80);
          }
        }
      }
    }
  }
}

struct UnsignedSignedDot {  // avx512_stream.h's Dot
  using Acc = __m512i;
  using Sum = int32_t;
  static Acc zero() { return _mm512_setzero_si512(); }
  static Acc dot(Acc acc, __m512i x, __m512i w) { return _mm512_dpbusd_epi32(acc, x, w); }
  static void store(Sum* t, Acc acc) { _mm512_storeu_si512(t, acc); }
};

// 128 * sum over k < depth of row j of w (signed bytes), for the call's rows.
void row_sums_128(const uint8_t* w, int64_t ldw, int64_t depth, int32_t* sums) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t j = 0; j < avx512::kStreamCols; ++j) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t k = 0; k < depth; k += 64) {
      const __mmask64 keep = depth - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (depth - k)) - 1;
      acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(keep, w + j * ldw + k));
    }
    sums[j] = static_cast<int32_t>(static_cast<uint32_t>(_mm512_reduce_add_epi32(acc)) << 7);
  }
}

// c[i * ldc + j] for i < rows, j < avx512::kStreamCols (Int8Stream::multiply).
void multiply(const uint8_t* xp, int64_t rows, int64_t depth, const uint8_t* w, int64_t ldw, int32_t* c,
              int64_t ldc) {
  avx512::stream_rows<UnsignedSignedDot>(xp, rows, depth, w, ldw, c, ldc);
  int32_t sums[avx512::kStreamCols];
  row_sums_128(w, ldw, depth, sums);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < avx512::kStreamCols; ++j) {  // wrapping, as the products
      c[i * ldc + j] = static_cast<int32_t>(static_cast<uint32_t>(c[i * ldc + j]) - static_cast<uint32_t>(sums[j]));
    }
  }
}

}  // namespace

const Int8Stream* avx512_int8_stream() {
  static const Int8Stream stream{kMinRows, kMaxRows, 4, avx512::kStreamCols, pack_x, multiply};
  return &stream;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const Int8Stream* avx512_int8_stream() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
