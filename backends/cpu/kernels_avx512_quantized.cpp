// The byte-coded kernels of the avx512 set (kernels.h QuantizedKernels):
// float8 and int8 codes decoded to bf16 with byte permutes (AVX512_VBMI) and
// multiplied in bf16 pairs (vdpbf16ps, AVX512_BF16); int8 weights streamed
// into vpdpbusd (AVX512_VNNI) as they are. Used only where the CPU has all
// three; compiled with the avx512 flags plus -mavx512vbmi -mavx512vnni.
//
// Decoding 64 codes at once. A table of bf16 codes is split into two byte
// planes — the high and the low byte of every code — of one byte per entry.
// vpermi2b looks 64 codes up in 128 table bytes (index bits 0-6), and the
// planes are interleaved back into 16-bit codes with unpacklo / unpackhi,
// which work within 128-bit lanes, so the two outputs hold
//   z0: codes 0-7, 16-23, 32-39, 48-55      z1: codes 8-15, 24-31, 40-47, 56-63.
// decode_rows() takes any 256-entry table (two lookups per plane, bit 7 picks
// one) and restores the order with one two-source qword permute per output.
// The streaming product decodes float8 by magnitude (the 128 codes below
// 0x80: one lookup per plane) and ORs in the sign bit, which is the sign of
// the bf16 too; the FNUZ formats' 0x80 (their NaN, not -0) is patched in.
//
// The streaming product (decode-shaped calls: rows <= 4 of a). Each tile of
// COLS columns reads COLS rows of w, 64 codes at a time, decodes them once
// and multiplies them with every row of a, decoded once per call in the same
// lane order (a dot product does not care about the order, only that a and
// w pair up). Per 64 float8 weight bytes: 2 permutes, 1 ternary logic op, 2
// unpacks and 2 * ROWS vdpbf16ps. int8 needs no decode: vpdpbusd multiplies
// unsigned by signed bytes, so a goes in as a + 128 (a ^ 0x80) and 128 times
// each column's sum (one more vpdpbusd, against ones) comes off at the end;
// the int32 sums are exact. Accumulators: ROWS x COLS vectors, and as many
// totals where blocks are folded (kernels.h QuantizedSmallM); columns per
// tile: see columns().

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace hetero {
namespace cpu {
namespace {

struct Planes {
  __m512i hi0, hi1, hi2, hi3, lo0, lo1, lo2, lo3;
};

Planes load_planes(const uint16_t* table) {
  alignas(64) uint8_t hi[256], lo[256];
  for (int i = 0; i < 256; ++i) {
    hi[i] = static_cast<uint8_t>(table[i] >> 8);
    lo[i] = static_cast<uint8_t>(table[i] & 0xff);
  }
  return {_mm512_load_si512(hi), _mm512_load_si512(hi + 64), _mm512_load_si512(hi + 128),
          _mm512_load_si512(hi + 192), _mm512_load_si512(lo), _mm512_load_si512(lo + 64),
          _mm512_load_si512(lo + 128), _mm512_load_si512(lo + 192)};
}

// 64 codes into 64 bf16 in the lane order above.
inline void decode64(const Planes& t, __m512i codes, __m512i* z0, __m512i* z1) {
  const __mmask64 upper = _mm512_movepi8_mask(codes);
  const __m512i hi = _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.hi0, codes, t.hi1),
                                            _mm512_permutex2var_epi8(t.hi2, codes, t.hi3));
  const __m512i lo = _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.lo0, codes, t.lo1),
                                            _mm512_permutex2var_epi8(t.lo2, codes, t.lo3));
  *z0 = _mm512_unpacklo_epi8(lo, hi);
  *z1 = _mm512_unpackhi_epi8(lo, hi);
}

// Codes [k0, k0 + 64) of a row, zeros past depth (code 0 is +0 in every format).
inline __m512i load_codes(const uint8_t* row, int64_t k0, int64_t depth) {
  if (k0 + 64 <= depth) return _mm512_loadu_si512(row + k0);
  return _mm512_maskz_loadu_epi8(_cvtu64_mask64(~0ull >> (64 - (depth - k0))), row + k0);
}

inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

// The weight formats of the streaming product.
enum Kind { kFloat8 = 0, kFloat8Fnuz = 1, kInt8 = 2 };

// Magnitude planes of a float8 table (codes 0-127: positive values), and the
// patch for FNUZ's 0x80.
struct HalfPlanes {
  __m512i hi0, hi1, lo0, lo1, nan_hi, nan_lo;
};

HalfPlanes load_half_planes(const uint16_t* table) {
  const Planes p = load_planes(table);
  return {p.hi0, p.hi1, p.lo0, p.lo1, _mm512_set1_epi8(static_cast<char>(table[0x80] >> 8)),
          _mm512_set1_epi8(static_cast<char>(table[0x80] & 0xff))};
}

template <int KIND>
inline void decode_signed(const HalfPlanes& t, __m512i codes, __m512i* z0, __m512i* z1) {
  // hi = plane[code & 0x7f] | (code & 0x80): the sign is bf16's top bit.
  __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(t.hi0, codes, t.hi1), codes,
                                         _mm512_set1_epi8(static_cast<char>(0x80)), 0xf8);
  __m512i lo = _mm512_permutex2var_epi8(t.lo0, codes, t.lo1);
  if (KIND == kFloat8Fnuz) {
    const __mmask64 nan = _mm512_cmpeq_epi8_mask(codes, _mm512_set1_epi8(static_cast<char>(0x80)));
    hi = _mm512_mask_mov_epi8(hi, nan, t.nan_hi);
    lo = _mm512_mask_mov_epi8(lo, nan, t.nan_lo);
  }
  *z0 = _mm512_unpacklo_epi8(lo, hi);
  *z1 = _mm512_unpackhi_epi8(lo, hi);
}

// Rows of codes into rows of bf16 in order, through decode(codes, &z0, &z1).
template <class Decode>
void decode_rows_with(Decode decode, const uint8_t* src, int64_t ld_src, int64_t rows,
                      int64_t cols, const uint16_t* table, uint16_t* dst, int64_t ld_dst) {
  // qwords 0-7 of z0 and 8-15 of z1: the first 32 codes are z0's lane 0, z1's
  // lane 0, z0's lane 1, z1's lane 1; the next 32 lanes 2 and 3.
  const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* s = src + i * ld_src;
    uint16_t* d = dst + i * ld_dst;
    int64_t k = 0;
    for (; k + 64 <= cols; k += 64) {
      __m512i z0, z1;
      decode(_mm512_loadu_si512(s + k), &z0, &z1);
      _mm512_storeu_si512(d + k, _mm512_permutex2var_epi64(z0, first, z1));
      _mm512_storeu_si512(d + k + 32, _mm512_permutex2var_epi64(z0, second, z1));
    }
    for (; k < cols; ++k) d[k] = table[s[k]];
  }
}

// Whether code c | 0x80 is code c with the sign bit set, for every c (but
// 0x80 itself where `but_zero`): the float8 formats, FNUZ with but_zero.
bool sign_symmetric(const uint16_t* table, bool but_zero) {
  for (int c = but_zero ? 1 : 0; c < 128; ++c) {
    if (table[c | 0x80] != (table[c] | 0x8000)) return false;
  }
  return true;
}

// Float8 tables take the magnitude lookup (half the permutes), int8 the full one.
void decode_rows(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols,
                 const uint16_t* table, uint16_t* dst, int64_t ld_dst) {
  if (sign_symmetric(table, false) || sign_symmetric(table, true)) {
    const HalfPlanes t = load_half_planes(table);
    const bool fnuz = !sign_symmetric(table, false);
    auto plain = [&](__m512i codes, __m512i* z0, __m512i* z1) {
      decode_signed<kFloat8>(t, codes, z0, z1);
    };
    auto patched = [&](__m512i codes, __m512i* z0, __m512i* z1) {
      decode_signed<kFloat8Fnuz>(t, codes, z0, z1);
    };
    if (fnuz) return decode_rows_with(patched, src, ld_src, rows, cols, table, dst, ld_dst);
    return decode_rows_with(plain, src, ld_src, rows, cols, table, dst, ld_dst);
  }
  const Planes t = load_planes(table);
  auto full = [&](__m512i codes, __m512i* z0, __m512i* z1) { decode64(t, codes, z0, z1); };
  decode_rows_with(full, src, ld_src, rows, cols, table, dst, ld_dst);
}

template <int ROWS, int COLS, int KIND, bool FOLDS>
void tile(const QuantizedSmallM& p, const HalfPlanes& t, const void* a_prepared, int64_t lda_p,
          int64_t j0, int64_t step) {
  // Columns j0 + c * step, c < COLS (see columns_by). Float8: bf16 sums
  // (acc) fold into float totals. int8: int32 sums (iacc) and the columns'
  // sums of w (colsum) fold into int32 totals, or scaled into float totals
  // for block scales.
  // Few accumulators (ROWS * COLS <= 4) cannot hide vdpbf16ps's latency with one
  // chain each: the two halves of every chunk then go to separate chains.
  constexpr bool kSplit = ROWS * COLS <= 4;
  __m512 acc[ROWS][COLS], acc2[ROWS][COLS], total[ROWS][COLS];
  __m512i iacc[ROWS][COLS], exact[ROWS][COLS], colsum[COLS];
  const __m512i ones = _mm512_set1_epi8(1);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < COLS; ++c) {
      acc[r][c] = acc2[r][c] = total[r][c] = _mm512_setzero_ps();
      iacc[r][c] = exact[r][c] = _mm512_setzero_si512();
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < COLS; ++c) colsum[c] = _mm512_setzero_si512();
  // FOLDS: whether p.block != 0; as a constant it lets a tile without blocks
  // keep only its sums and the weights in registers.
  const int64_t depth = p.depth, block = FOLDS ? p.block : 0;
  const uint8_t* w = p.w + j0 * p.ldw;
  const int64_t ldw_c = step * p.ldw;  // from one column's row of w to the next's
  // Some hardware prefetchers stop at every page (a 4096-byte row is one): the
  // row kAheadBytes on in each column's stream is asked into L2 at the pace of
  // this tile's, so it does not start cold (measured on a Xeon with one column
  // at K = 4096; no measurable effect on a Zen 4).
  constexpr int64_t kAheadBytes = 12 * 1024;
  const int64_t ahead = std::max<int64_t>(1, kAheadBytes / p.ldw) * p.ldw;
  auto prefetch_ahead = [&](int c, int64_t k0) {
    _mm_prefetch(reinterpret_cast<const char*>(w + c * ldw_c + ahead + k0), _MM_HINT_T1);
  };
  for (int64_t k0 = 0; k0 < depth; k0 += 64) {
    if (KIND == kInt8) {
      const uint8_t* a = static_cast<const uint8_t*>(a_prepared);
      __m512i wc[COLS];
#pragma GCC unroll 8
      for (int c = 0; c < COLS; ++c) {
        prefetch_ahead(c, k0);
        wc[c] = load_codes(w + c * ldw_c, k0, depth);
        colsum[c] = _mm512_dpbusd_epi32(colsum[c], ones, wc[c]);
      }
#pragma GCC unroll 8
      for (int r = 0; r < ROWS; ++r) {
        const __m512i ar = _mm512_loadu_si512(a + r * lda_p + k0);
#pragma GCC unroll 8
        for (int c = 0; c < COLS; ++c) iacc[r][c] = _mm512_dpbusd_epi32(iacc[r][c], ar, wc[c]);
      }
    } else {
      const uint16_t* a16 = static_cast<const uint16_t*>(a_prepared);
      __m512i w0[COLS], w1[COLS];
#pragma GCC unroll 8
      for (int c = 0; c < COLS; ++c) {
        prefetch_ahead(c, k0);
        decode_signed<KIND>(t, load_codes(w + c * ldw_c, k0, depth), &w0[c], &w1[c]);
      }
#pragma GCC unroll 8
      for (int r = 0; r < ROWS; ++r) {
        const __m512i a0 = _mm512_loadu_si512(a16 + r * lda_p + k0);
        const __m512i a1 = _mm512_loadu_si512(a16 + r * lda_p + k0 + 32);
#pragma GCC unroll 8
        for (int c = 0; c < COLS; ++c) {
          acc[r][c] = _mm512_dpbf16_ps(acc[r][c], as_bh(a0), as_bh(w0[c]));
          if (kSplit) {
            acc2[r][c] = _mm512_dpbf16_ps(acc2[r][c], as_bh(a1), as_bh(w1[c]));
          } else {
            acc[r][c] = _mm512_dpbf16_ps(acc[r][c], as_bh(a1), as_bh(w1[c]));
          }
        }
      }
    }
    const int64_t done = k0 + 64;
    if (block == 0 || (done % block != 0 && done < depth)) continue;
    const int64_t kb = k0 / block;  // fold this block's sums into the totals
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < COLS; ++c) {
        if (KIND == kInt8) {  // the block's exact sum: a.w = (a + 128).w - 128 sum(w)
          const __m512i sum = _mm512_sub_epi32(iacc[r][c], _mm512_slli_epi32(colsum[c], 7));
          if (p.scale_a != nullptr) {
            const float s = p.scale_a[r * p.sa_rows + kb * p.sa_cols] *
                            p.scale_b[kb * p.sb_rows + ((j0 + c * step) / 128) * p.sb_cols];
            total[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(s), total[r][c]);
          } else {
            exact[r][c] = _mm512_add_epi32(exact[r][c], sum);
          }
          iacc[r][c] = _mm512_setzero_si512();
        } else {
          const __m512 sum = kSplit ? _mm512_add_ps(acc[r][c], acc2[r][c]) : acc[r][c];
          if (p.scale_a != nullptr) {
            const float s = p.scale_a[r * p.sa_rows + kb * p.sa_cols] *
                            p.scale_b[kb * p.sb_rows + ((j0 + c * step) / 128) * p.sb_cols];
            total[r][c] = _mm512_fmadd_ps(sum, _mm512_set1_ps(s), total[r][c]);
          } else {
            exact[r][c] = _mm512_add_epi32(exact[r][c], _mm512_cvtps_epi32(sum));
          }
          acc[r][c] = acc2[r][c] = _mm512_setzero_ps();
        }
      }
    }
    if (KIND == kInt8) {
#pragma GCC unroll 8
      for (int c = 0; c < COLS; ++c) colsum[c] = _mm512_setzero_si512();
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < COLS; ++c) {
      if (p.exact_int) {
        static_cast<int32_t*>(p.c)[r * p.ldc + j0 + c * step] = _mm512_reduce_add_epi32(exact[r][c]);
      } else {
        static_cast<float*>(p.c)[r * p.ldc + j0 + c * step] =
            _mm512_reduce_add_ps(block != 0 ? total[r][c]
                                 : kSplit ? _mm512_add_ps(acc[r][c], acc2[r][c]) : acc[r][c]);
      }
    }
  }
}

// Columns [col0, col1) in tiles of COLS columns lying `step` apart, step =
// (col1 - col0) / COLS: tile r takes columns col0 + r + c * step, so each of
// its columns moves one row of w on per tile and reads `step` consecutive rows
// (consecutive in memory where w is contiguous) as one stream, which the
// hardware prefetcher follows across pages; adjacent columns would start COLS
// new streams, one page each at K = 4096, on every tile. The last
// (col1 - col0) % COLS columns go one by one.
template <int ROWS, int COLS, int KIND, bool FOLDS>
void columns_by(const QuantizedSmallM& p, const HalfPlanes& t, const void* a_prepared,
                int64_t lda_p, int64_t col0, int64_t col1) {
  const int64_t step = (col1 - col0) / COLS;
  for (int64_t r = 0; r < step; ++r) {
    tile<ROWS, COLS, KIND, FOLDS>(p, t, a_prepared, lda_p, col0 + r, step);
  }
  for (int64_t j = col0 + step * COLS; j < col1; ++j) {
    tile<ROWS, 1, KIND, FOLDS>(p, t, a_prepared, lda_p, j, 1);
  }
}

// Columns per tile: 8 for one row of a, 4 for 2-4 rows (what the 32 vector
// registers hold with the decoded weights). More columns keep more reads of w
// in flight, and each load of a's prepared rows (up to 28 KiB of bf16 per row
// at K = 14336, beyond L1) serves more of them. Measured on a Zen 4 against
// fewer (bench/RESULTS.md).
template <int ROWS, int KIND>
void columns(const QuantizedSmallM& p, const HalfPlanes& t, const void* a_prepared,
             int64_t lda_p, int64_t col0, int64_t col1) {
  constexpr int kCols = ROWS > 1 ? 4 : 8;
  if (p.block != 0) return columns_by<ROWS, kCols, KIND, true>(p, t, a_prepared, lda_p, col0, col1);
  columns_by<ROWS, kCols, KIND, false>(p, t, a_prepared, lda_p, col0, col1);
}

template <int KIND>
void by_rows(const QuantizedSmallM& p, const HalfPlanes& t, const void* a_prepared,
             int64_t lda_p, int64_t col0, int64_t col1) {
  switch (p.rows) {
    case 1: return columns<1, KIND>(p, t, a_prepared, lda_p, col0, col1);
    case 2: return columns<2, KIND>(p, t, a_prepared, lda_p, col0, col1);
    case 3: return columns<3, KIND>(p, t, a_prepared, lda_p, col0, col1);
    default: return columns<4, KIND>(p, t, a_prepared, lda_p, col0, col1);
  }
}

void small_m(const QuantizedSmallM& p, int64_t col0, int64_t col1) {
  // a's rows, prepared once per call and zero-padded to whole chunks of 64
  // (w's tail loads are zeros too): float8 decoded in the lane order above,
  // int8 as a + 128 (the padding then is 0 + 128, against zero weights).
  const int64_t ld = (p.depth + 63) / 64 * 64;
  const Planes full = load_planes(p.table);
  const HalfPlanes t = load_half_planes(p.table);
  thread_local std::vector<uint16_t> prepared;
  prepared.resize(static_cast<size_t>(std::max<int64_t>(p.rows * ld, 1)));
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t k0 = 0; k0 < p.depth; k0 += 64) {
      const __m512i codes = load_codes(p.a + r * p.lda, k0, p.depth);
      if (p.dtype == DType::int8) {
        uint8_t* a8 = reinterpret_cast<uint8_t*>(prepared.data()) + r * ld + k0;
        _mm512_storeu_si512(a8, _mm512_xor_si512(codes, _mm512_set1_epi8(static_cast<char>(0x80))));
        continue;
      }
      __m512i z0, z1;
      decode64(full, codes, &z0, &z1);
      _mm512_storeu_si512(prepared.data() + r * ld + k0, z0);
      _mm512_storeu_si512(prepared.data() + r * ld + k0 + 32, z1);
    }
  }
  switch (p.dtype) {
    case DType::int8: return by_rows<kInt8>(p, t, prepared.data(), ld, col0, col1);
    case DType::float8_e4m3fnuz:
    case DType::float8_e5m2fnuz: return by_rows<kFloat8Fnuz>(p, t, prepared.data(), ld, col0, col1);
    default: return by_rows<kFloat8>(p, t, prepared.data(), ld, col0, col1);
  }
}

}  // namespace

const QuantizedKernels* avx512_quantized_kernels() {
  static const QuantizedKernels kernels{decode_rows, small_m, avx512_int8_gemm()};
  return &kernels;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX-512 path in this build

namespace hetero {
namespace cpu {
const QuantizedKernels* avx512_quantized_kernels() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
