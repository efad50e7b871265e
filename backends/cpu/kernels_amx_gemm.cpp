// bf16 products on AMX tiles, for CPUs with AMX-BF16 (Intel Sapphire Rapids
// and later): the amx kernel set's bf16 GEMM (kernels.h DotGemm, driven by
// gemm.cpp's BLIS loop nest like the vector micro-kernels), flash attention's
// two products in the same layouts (DotAttention, attention_forward.cpp) and
// a weight-streaming product for a few rows of x (WeightStream,
// gemm_weight_stream.cpp). Compiled with -mamx-tile -mamx-bf16 and AVX-512;
// reached only through the amx set, which exists where amx_peak.h's check
// passes.
//
// Micro-tile 32 x 32 of C, as four 16 x 16 fp32 tiles (C00 C01 / C10 C11),
// plus two A tiles (16 rows x 32 values of k) and two B tiles (16 pairs of k
// x 16 columns): all eight tile registers. Per 32 values of k: four tile
// loads and four tdpbf16ps of 16384 flops each; each A tile meets both B
// tiles, so every load feeds two products.
//
// Packed layouts (depth zero-padded to a multiple of 32, rows and columns to
// whole slivers, so the micro-kernel never sees an edge):
//   Ap: per 32-row sliver, per 32 values of k, the two A tiles back to back,
//       each 16 rows of 32 bf16 (k contiguous): 2 KiB, loaded at a 64-byte
//       row stride.
//   Bp: per 32-column sliver, per pair of k, the 32 words (b[k][j],
//       b[k+1][j]) — the avx512 set's attention B layout, whose 128-byte rows
//       hold both B tiles side by side: loaded at a 128-byte stride from
//       offsets 0 and 64 bytes.
// Blocks: a KC x 32 B sliver (32 KiB) stays in L1 while the MC / 32 row
// slivers of the MC x KC A block (256 KiB, in L2) pass over it.
//
// Rounding: exact bf16 products, fp32 sums (the order within a tile's 32
// values of k is the hardware's), as the avx512 set's vdpbf16ps GEMM, except
// that a product that underflows float32 is flushed to zero before it is
// added (so its sign is lost): differences far below the bounds hetero
// checks against.

#include "amx_peak.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include <cstring>

#include "amx_stream.h"
#include "avx512_vectors.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kTileRows = 16;                        // rows of every tile
constexpr int64_t kStep = 32;                            // values of k per tile product
constexpr int64_t kMRAmx = 32, kNRAmx = 32;              // the micro-tile
constexpr int64_t kMCAmx = 256, kKCAmx = 512, kNCAmx = 512;  // blocks
constexpr int64_t kTileValues = kTileRows * kStep;        // bf16 values in one A tile
static_assert(kNRAmx == kDotAttentionNR, "Bp is the attention B layout");

inline int64_t steps_of(int64_t depth) { return (depth + kStep - 1) / kStep; }

// ---------------------------------------------------------------- packing

// One A tile from rows [r0, r0 + 16) and k [k0, k0 + 32) of a row-major
// (unit k stride) source: each row is one masked 64-byte copy.
void tile_from_rows(const uint16_t* x, int64_t ld, int64_t r0, int64_t rows, int64_t k0,
                    int64_t depth, uint16_t* tile) {
  const int64_t n = depth - k0 < kStep ? depth - k0 : kStep;
  const __mmask32 keep = n >= 32 ? ~__mmask32{0} : (__mmask32{1} << n) - 1;
  for (int64_t r = 0; r < kTileRows; ++r) {
    const __m512i v = r0 + r < rows ? _mm512_maskz_loadu_epi16(keep, x + (r0 + r) * ld + k0)
                                    : _mm512_setzero_si512();
    _mm512_storeu_si512(tile + r * kStep, v);
  }
}

// The same from a source whose rows are adjacent (unit row stride: a
// transposed A), x[i + k * ld]: per pair of k, the 16 rows' two values are
// interleaved into 16 words, and the 16 pairs x 16 rows of words transposed.
void tile_from_columns(const uint16_t* x, int64_t ld, int64_t r0, int64_t rows, int64_t k0,
                       int64_t depth, uint16_t* tile) {
  const int64_t n = rows - r0 < kTileRows ? rows - r0 : kTileRows;
  const __mmask16 keep = n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  __m512i words[16];
  for (int p = 0; p < 16; ++p) {
    const int64_t k = k0 + 2 * p;
    const __m256i lo = k < depth ? _mm256_maskz_loadu_epi16(keep, x + k * ld + r0) : _mm256_setzero_si256();
    const __m256i hi = k + 1 < depth ? _mm256_maskz_loadu_epi16(keep, x + (k + 1) * ld + r0)
                                     : _mm256_setzero_si256();
    words[p] = _mm512_permutexvar_epi16(order, _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1));
  }
  avx512::transpose16(words);
  for (int r = 0; r < 16; ++r) _mm512_storeu_si512(tile + r * kStep, words[r]);
}

// Any other strides, value by value.
void tile_from_strided(const MatrixRef& src, int64_t r0, int64_t rows, int64_t k0, int64_t depth,
                       uint16_t* tile) {
  const auto* x = static_cast<const uint16_t*>(src.data);
  for (int64_t r = 0; r < kTileRows; ++r) {
    for (int64_t k = 0; k < kStep; ++k) {
      const bool inside = r0 + r < rows && k0 + k < depth;
      tile[r * kStep + k] = inside ? x[(r0 + r) * src.row_stride + (k0 + k) * src.col_stride] : 0;
    }
  }
}

// Ap: per 32-row sliver, steps_of(depth) x 2 A tiles.
void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, uint16_t* dst) {
  const auto* x = static_cast<const uint16_t*>(src.data);
  const int64_t steps = steps_of(depth);
  for (int64_t s0 = 0; s0 < rows; s0 += kMRAmx) {
    uint16_t* sliver = dst + s0 * steps * kStep;
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t half = 0; half < 2; ++half) {  // both halves read the same lines of k
        const int64_t r0 = s0 + half * kTileRows;
        uint16_t* tile = sliver + (2 * t + half) * kTileValues;
        if (src.col_stride == 1) {
          tile_from_rows(x, src.row_stride, r0, rows, t * kStep, depth, tile);
        } else if (src.row_stride == 1) {
          tile_from_columns(x, src.col_stride, r0, rows, t * kStep, depth, tile);
        } else {
          tile_from_strided(src, r0, rows, t * kStep, depth, tile);
        }
      }
    }
  }
}

// 16 columns [j0, j0 + 16) of a b whose columns are contiguous (unit row
// stride: x @ w.t(), the layout of a Linear weight), column j at x + j * ld,
// into the pair rows of one B tile's place in a sliver (row stride 32 words):
// 16 pairs of k at a time, one 64-byte load per column, transpose16, one
// 64-byte store per pair. Columns past `cols` and k past depth are zeros.
void b_tile_from_columns(const uint16_t* x, int64_t ld, int64_t j0, int64_t cols, int64_t depth,
                         int64_t padded, uint32_t* dst) {
  const int64_t n = cols - j0 < 16 ? cols - j0 : 16;
  for (int64_t k0 = 0; k0 < padded; k0 += kStep) {
    const int64_t kn = depth - k0 < kStep ? (depth > k0 ? depth - k0 : 0) : kStep;
    const __mmask32 keep = kn >= 32 ? ~__mmask32{0} : (__mmask32{1} << kn) - 1;
    __m512i words[16];
    for (int64_t j = 0; j < 16; ++j) {
      words[j] = j < n ? _mm512_maskz_loadu_epi16(keep, x + (j0 + j) * ld + k0) : _mm512_setzero_si512();
    }
    avx512::transpose16(words);  // words[p] = pair p of the 16 columns
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(dst + (k0 / 2 + p) * kNRAmx, words[p]);
  }
}

// Bp: per 32-column sliver, by b_tile_from_columns where b's columns are
// contiguous, else by the attention B packer (pairs of k up to the even
// depth) and zeros up to the whole steps the tiles read.
void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, uint16_t* dst) {
  const int64_t padded = steps_of(depth) * kStep, even = (depth + 1) / 2 * 2;
  if (src.row_stride != 1 && src.col_stride == 1 && padded == depth) {
    // Rows of b contiguous (x @ w): one call over all the columns interleaves
    // each pair of rows across them, reading the rows in order (sliver by
    // sliver it would read 64 bytes of each); its slivers lie back to back
    // as Bp's do when the depth needs no padding.
    avx512_bf16_attention()->pack_b(src, depth, cols, dst);
    return;
  }
  for (int64_t j0 = 0; j0 < cols; j0 += kNRAmx) {
    uint16_t* sliver = dst + j0 * padded;
    if (src.row_stride == 1) {
      const auto* x = static_cast<const uint16_t*>(src.data);
      auto* words = reinterpret_cast<uint32_t*>(sliver);
      b_tile_from_columns(x, src.col_stride, j0, cols, depth, padded, words);
      b_tile_from_columns(x, src.col_stride, j0 + 16, cols, depth, padded, words + 16);
      continue;
    }
    const int64_t n = cols - j0 < kNRAmx ? cols - j0 : kNRAmx;
    avx512_bf16_attention()->pack_b({src.at(0, j0), src.dtype, src.row_stride, src.col_stride}, depth, n,
                                    sliver);
    std::memset(sliver + even * kNRAmx, 0, sizeof(uint16_t) * static_cast<size_t>((padded - even) * kNRAmx));
  }
}

// ---------------------------------------------------------------- micro-kernel

// Every tile 16 rows x 64 bytes. Loaded per block of the loop nest, not per
// micro call (it is slow next to a 32 x 32 product), and not once per thread:
// other AMX code on the thread (PyTorch's) releases the tiles when done.
// (static: GCC drops stores into a local configuration that only
// ldtilecfg reads.)
void begin() {
  static const TileConfig config;
  _tile_loadconfig(&config);
}

// c[32 x 32] (row stride ldc) = (accumulate ? c : 0) + a_sliver . b_sliver
// over `depth` (a multiple of 32) values of k. Tiles: 0-3 C, 4-5 A, 6-7 B.
void micro(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
           bool accumulate) {
  const int64_t c_stride = ldc * static_cast<int64_t>(sizeof(float));
  float* c10 = c + kTileRows * ldc;
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    _tile_loadd(1, c + 16, c_stride);
    _tile_loadd(2, c10, c_stride);
    _tile_loadd(3, c10 + 16, c_stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  // Software-pipelined: tile registers are not renamed, so each load of the
  // next step's operand is issued as soon as this step's last product reading
  // that register is, and overlaps the products still running.
  const int64_t steps = depth / kStep;
  _tile_loadd(4, a, 64);
  _tile_loadd(6, b, 128);
  _tile_loadd(7, b + 32, 128);  // columns 16-31: the second 64 bytes of each row
  _tile_loadd(5, a + kTileValues, 64);
  for (int64_t t = 1; t < steps; ++t) {
    a += 2 * kTileValues, b += kStep * kNRAmx;
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(4, a, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_loadd(6, b, 128);
    _tile_dpbf16ps(3, 5, 7);
    _tile_loadd(5, a + kTileValues, 64);
    _tile_loadd(7, b + 32, 128);
  }
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
  _tile_stored(0, c, c_stride);
  _tile_stored(1, c + 16, c_stride);
  _tile_stored(2, c10, c_stride);
  _tile_stored(3, c10 + 16, c_stride);
}

// ------------------------------------------------------- attention's products

// Flash attention's P (float32 rows p[i * ld + k], i < rows, k < depth) rounded
// to bf16 (to nearest even) into Ap's tiles, zeros past rows and depth.
void pack_a_f32(const float* p, int64_t ld, int64_t rows, int64_t depth, uint16_t* dst) {
  const int64_t steps = steps_of(depth);
  for (int64_t s0 = 0; s0 < rows; s0 += kMRAmx) {
    uint16_t* sliver = dst + s0 * steps * kStep;
    for (int64_t r = 0; r < kMRAmx; ++r) {
      const float* row = p + (s0 + r) * ld;
      const bool inside = s0 + r < rows;
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t k0 = t * kStep, n = depth - k0 < kStep ? depth - k0 : kStep;
        const __mmask16 lo = n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
        const __mmask16 hi = n >= 32 ? __mmask16(0xFFFF) : n > 16 ? static_cast<__mmask16>((1u << (n - 16)) - 1) : 0;
        const __m512 x0 = inside ? _mm512_maskz_loadu_ps(lo, row + k0) : _mm512_setzero_ps();
        const __m512 x1 = inside ? _mm512_maskz_loadu_ps(hi, row + k0 + 16) : _mm512_setzero_ps();
        uint16_t* out = sliver + (2 * t + r / kTileRows) * kTileValues + (r % kTileRows) * kStep;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), (__m256i)_mm512_cvtneps_pbh(x0));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16), (__m256i)_mm512_cvtneps_pbh(x1));
      }
    }
  }
}

// One row of flash attention's P straight from its scores, in one pass:
// p[j] = 2^(x[j] * a - shift) for j < n (the exp2 of the avx512 set's
// exp2_sum, summed in the same order), rounded to bf16 into row r of a
// 32-row sliver of Ap as pack_a_f32 places it, zeros for n <= j < padded (a
// multiple of 32). Returns the sum of the unrounded p, and in *x_max the
// largest x[j] (a NaN among them may or may not show there). Saves the passes
// that scale the scores, store P as float32 and read it back to pack it, each
// a trip through L2 for a block of scores.
float softmax_pack_row(const float* x, int64_t n, int64_t padded, float a, float shift, int64_t r,
                       uint16_t* sliver, float* x_max) {
  const __m512 scale = _mm512_set1_ps(a), sub = _mm512_set1_ps(shift), none = _mm512_set1_ps(-__builtin_inff());
  __m512 sum = _mm512_setzero_ps(), top = none;
  // Lanes at or past n load -inf: 2^-inf = 0, so they add nothing and store 0.
  auto p16 = [&](int64_t k, int64_t left) {
    const __mmask16 keep = left >= 16 ? __mmask16(0xFFFF) : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
    const __m512 s = _mm512_mask_loadu_ps(none, keep, x + k);
    top = _mm512_max_ps(top, s);
    return avx512::exp2_nonpositive(_mm512_sub_ps(_mm512_mul_ps(s, scale), sub));
  };
  uint16_t* out = sliver + (r / kTileRows) * kTileValues + (r % kTileRows) * kStep;
  for (int64_t k0 = 0; k0 < padded; k0 += kStep, out += 2 * kTileValues) {
    const __m512 e0 = p16(k0, n - k0), e1 = p16(k0 + 16, n - k0 - 16);
    sum = _mm512_add_ps(_mm512_add_ps(sum, e0), e1);
    _mm512_storeu_si512(out, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
  }
  *x_max = _mm512_reduce_max_ps(top);
  return _mm512_reduce_add_ps(sum);
}

// ------------------------------------------------------- streaming the weight

// WeightStream (kernels.h): amx_stream.h's loop on tdpbf16ps, x packed as
// pairs (the attention B slivers of x^T: 32 rows of x per sliver).
// Rows of x it serves: from 3 (below, the vector small-M product streams w as
// fast) to 128 (above, packing w once pays: the BLIS nest is faster).
constexpr int64_t kStreamMinRows = 3, kStreamMaxRows = 128;

struct Bf16Dot {  // amx_stream.h's Dot
  static void c0() { _tile_dpbf16ps(0, 4, 6); }
  static void c1() { _tile_dpbf16ps(1, 4, 7); }
  static void c2() { _tile_dpbf16ps(2, 5, 6); }
  static void c3() { _tile_dpbf16ps(3, 5, 7); }
};

void stream_multiply(const uint16_t* xp, int64_t rows, int64_t depth, const uint16_t* w, int64_t ldw,
                     float* c, int64_t ldc) {
  constexpr int64_t E = sizeof(uint16_t);
  amx::stream_rows<Bf16Dot>(reinterpret_cast<const uint8_t*>(xp), rows, depth * E,
                            reinterpret_cast<const uint8_t*>(w), ldw * E, c, ldc);
}

}  // namespace

const DotAttention* amx_attention() {
  static_assert(kTileAttentionMR == kMRAmx && kTileAttentionNR == kNRAmx && kTileAttentionK == kStep,
                "attention runs the GEMM's tiles");
  if (amx_bf16_gemm() == nullptr) return nullptr;
  static const DotAttention attention{pack_a, pack_a_f32, pack_b, micro, begin, softmax_pack_row};
  return &attention;
}

const WeightStream* amx_weight_stream() {
  if (amx_bf16_gemm() == nullptr) return nullptr;
  static const WeightStream stream{kStreamMinRows, kStreamMaxRows, kStep, amx::kStreamCols,
                                   pack_bf16_stream_x, stream_multiply};
  return &stream;
}

const DotGemm* amx_bf16_gemm() {
  if (!amx_bf16_available() || avx512_bf16_attention() == nullptr) return nullptr;
  static const DotGemm gemm{kMRAmx, kNRAmx, kMCAmx, kKCAmx, kNCAmx, kStep, pack_a, pack_b, micro, begin};
  return &gemm;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const DotGemm* amx_bf16_gemm() { return nullptr; }
const WeightStream* amx_weight_stream() { return nullptr; }
const DotAttention* amx_attention() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
