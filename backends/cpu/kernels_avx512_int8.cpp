// The exact int8 GEMM of the avx512 set (kernels.h Int8Gemm): vpdpbusd
// (AVX512_VNNI) multiplies 4 unsigned by 4 signed bytes and adds the four
// products to an int32 lane, 64 multiply-adds per instruction — twice
// vdpbf16ps's. It multiplies u8 by s8, so a is shifted to a + 128 while
// packing and the caller subtracts 128 * (column sum of b) at the end; int32
// never overflows for K < 2^31 / (255 * 128) = 65793.
//
// Micro-tile 8 x 48: per quad of k, three 512-bit B loads (48 columns x 4
// bytes) and 8 broadcast A words feed 24 vpdpbusd into 24 accumulators; with
// the B vectors and the broadcast, 28 of the 32 registers (as the bf16 tile
// of kernels_avx512_bf16.cpp). Compiled with the avx512 flags plus
// -mavx512vnni; used only where the CPU has it.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kMR8 = 8, kNR8 = 48;

inline uint8_t at(const uint8_t* src, int64_t i, int64_t j, int64_t rs, int64_t cs) {
  return src[i * rs + j * cs];
}

void pack_a(const uint8_t* src, int64_t rs, int64_t cs, int64_t rows, int64_t depth,
            uint8_t* dst) {
  const int64_t quads = (depth + 3) / 4;
  for (int64_t i0 = 0; i0 < rows; i0 += kMR8) {
    uint8_t* sliver = dst + (i0 / kMR8) * quads * kMR8 * 4;
    for (int64_t i = 0; i < kMR8; ++i) {
      for (int64_t k = 0; k < quads * 4; ++k) {
        const bool inside = i0 + i < rows && k < depth;
        // a + 128 as unsigned: flipping the sign bit; padding is a = 0.
        sliver[(k / 4) * kMR8 * 4 + i * 4 + k % 4] =
            static_cast<uint8_t>((inside ? at(src, i0 + i, k, rs, cs) : 0) ^ 0x80);
      }
    }
  }
}

void pack_b(const uint8_t* src, int64_t rs, int64_t cs, int64_t depth, int64_t cols,
            uint8_t* dst, int32_t* colsum) {
  const int64_t quads = (depth + 3) / 4;
  for (int64_t j0 = 0; j0 < cols; j0 += kNR8) {
    uint8_t* sliver = dst + (j0 / kNR8) * quads * kNR8 * 4;
    for (int64_t j = 0; j < kNR8; ++j) {
      const bool column = j0 + j < cols;
      int32_t sum = 0;
      if (column && rs == 1 && depth % 4 == 0) {  // w.t(): k runs are contiguous words
        const uint8_t* run = src + (j0 + j) * cs;
        for (int64_t q = 0; q < quads; ++q) {
          std::memcpy(sliver + q * kNR8 * 4 + j * 4, run + q * 4, 4);
          for (int b = 0; b < 4; ++b) sum += static_cast<int8_t>(run[q * 4 + b]);
        }
      } else {
        for (int64_t k = 0; k < quads * 4; ++k) {
          const uint8_t v = column && k < depth ? at(src, k, j0 + j, rs, cs) : 0;
          sliver[(k / 4) * kNR8 * 4 + j * 4 + k % 4] = v;
          sum += static_cast<int8_t>(v);
        }
      }
      colsum[j0 + j] += sum;
    }
  }
}

void micro(int64_t quads, const uint8_t* a, const uint8_t* b, int32_t* c, int64_t ldc,
           bool accumulate) {
  __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00,
          c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00, c40 = c00,
          c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00, c60 = c00, c61 = c00,
          c62 = c00, c70 = c00, c71 = c00, c72 = c00;
  for (int64_t q = 0; q < quads; ++q) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64),
                  b2 = _mm512_loadu_si512(b + 128);
    int32_t words[kMR8];
    std::memcpy(words, a, sizeof words);
#define HETERO_ROW(i)                                  \
  {                                                    \
    const __m512i ai = _mm512_set1_epi32(words[i]);    \
    c##i##0 = _mm512_dpbusd_epi32(c##i##0, ai, b0);    \
    c##i##1 = _mm512_dpbusd_epi32(c##i##1, ai, b1);    \
    c##i##2 = _mm512_dpbusd_epi32(c##i##2, ai, b2);    \
  }
    HETERO_ROW(0) HETERO_ROW(1) HETERO_ROW(2) HETERO_ROW(3)
    HETERO_ROW(4) HETERO_ROW(5) HETERO_ROW(6) HETERO_ROW(7)
#undef HETERO_ROW
    a += kMR8 * 4;
    b += kNR8 * 4;
  }
  const __m512i rows[kMR8][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22},
                                 {c30, c31, c32}, {c40, c41, c42}, {c50, c51, c52},
                                 {c60, c61, c62}, {c70, c71, c72}};
  for (int64_t i = 0; i < kMR8; ++i) {
    for (int v = 0; v < 3; ++v) {
      int32_t* ci = c + i * ldc + v * 16;
      const __m512i sum = accumulate ? _mm512_add_epi32(rows[i][v], _mm512_loadu_si512(ci))
                                     : rows[i][v];
      _mm512_storeu_si512(ci, sum);
    }
  }
}

}  // namespace

const Int8Gemm* avx512_int8_gemm() {
  static const Int8Gemm gemm{kMR8, kNR8, pack_a, pack_b, micro};
  return &gemm;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX-512 path in this build

namespace hetero {
namespace cpu {
const Int8Gemm* avx512_int8_gemm() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
