// Paged attention rows on AMX tiles (kernels.h PagedRows), for bf16 caches
// on CPUs with AMX-BF16. Compiled with -mamx-tile -mamx-bf16 and AVX-512;
// reached only through the avx512 kernel set where amx_peak.h's check passes.
//
// What it computes: for up to 16 query rows of one (sequence, key/value head)
// the online softmax over keys [j0, j1) of a paged cache, leaving (O, m, l)
// as attention_paged.cpp's generic path does (m in log2 units, O unnormed).
//
// The algorithm, per 32 keys (two 16-key groups, each inside one page since
// the block size is a multiple of 16):
//   S^T (16 keys x 16 rows) = K (16 x 32d) . Q^T (32d x 16)   tdpbf16ps per 32 of D:
//       K rows load straight from the page as the A tile; Q^T, prepared once,
//       is the B tile (pairs of d per row: Q's 32-bit words transposed).
//   mask, m, l, P^T = 2^(S^T - m) with the rows in the 16 lanes of a vector
//   P (16 rows x 32 keys, bf16) = P^T paired and transposed (16x16 dwords)
//   O[:, 16g:16g+16] += P . V[:, 16g:16g+16]                  tdpbf16ps per 16 of Dv:
//       V's B tile pairs consecutive keys per column, built in a buffer
//       (keys past the sequence zeroed: a page's unused rows may hold NaN).
// Tiles: 0-1 S^T of the two groups, then O slices; 2-3 K tiles, then 2 (and
// 4) V tiles and 3 the P tile; 4-7 Q^T (one per 32 of D up to 128; larger D
// reloads them through tile 3), all 16 rows x 64 bytes. P is rounded to bf16
// for its product, as flash attention does on GPUs.

#include "amx_peak.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "avx512_vectors.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int kTile = 16;  // rows of every tile; keys per group; rows per call
using avx512::exp2_nonpositive;
using avx512::transpose16;

// dword i of the result = (a[i], b[i]) as two 16-bit halves (low = a).
inline __m512i interleave16(__m256i a, __m256i b) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                       22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
}

void amx_paged_rows(const PagedRows& p, float* o, float* m_out, float* l_out) {
  const int64_t D = p.D, Dv = p.Dv, chunks = D / 32;
  const TileConfig config;
  _tile_loadconfig(&config);

  // Q^T tiles: for each 32 of D, 16 rows of d pairs x 16 query rows.
  alignas(64) uint32_t qt[16][kTile][kTile];  // up to D = 512
  for (int64_t c = 0; c < chunks; ++c) {
    __m512i rows[16];
    for (int r = 0; r < kTile; ++r) {
      rows[r] = r < p.rows ? _mm512_loadu_si512(static_cast<const uint16_t*>(p.q[r]) + 32 * c) : _mm512_setzero_si512();
    }
    transpose16(rows);
    for (int i = 0; i < kTile; ++i) _mm512_store_si512(qt[c][i], rows[i]);
  }
  const bool resident = chunks <= 4;
  if (resident) {
    if (chunks > 0) _tile_loadd(4, qt[0], 64);
    if (chunks > 1) _tile_loadd(5, qt[1], 64);
    if (chunks > 2) _tile_loadd(6, qt[2], 64);
    if (chunks > 3) _tile_loadd(7, qt[3], 64);
  }

  std::memset(o, 0, sizeof(float) * static_cast<size_t>(kTile * Dv));
  alignas(64) int32_t lo_a[kTile], hi_a[kTile];
  for (int r = 0; r < kTile; ++r) {  // padding rows see nothing
    lo_a[r] = r < p.rows ? static_cast<int32_t>(p.lo[r]) : 0;
    hi_a[r] = r < p.rows ? static_cast<int32_t>(p.hi[r]) : 0;
  }
  const __m512i lo = _mm512_load_si512(lo_a), hi = _mm512_load_si512(hi_a);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 q_scale = _mm512_set1_ps(p.q_scale);
  __m512 m = neg_inf, l = _mm512_setzero_ps();
  __mmask16 nan_rows = 0;

  alignas(64) float st[2 * kTile][kTile];   // S^T, then P^T, of 32 keys
  alignas(64) uint32_t pa[kTile][kTile];    // P (16 rows x 32 keys as pairs)
  alignas(64) uint32_t vb[32][kTile][kTile];  // V's B tiles, one per 16 of Dv (up to 512)
  const __m256i zero256 = _mm256_setzero_si256();

  for (int64_t j0 = p.j0; j0 < p.j1; j0 += 2 * kTile) {
    const int groups = j0 + kTile < p.j1 ? 2 : 1;
    if (resident) {  // both groups' S^T at once: two independent tile chains
      const uint16_t* k0 = p.key<uint16_t>(j0);
      const uint16_t* k1 = groups == 2 ? p.key<uint16_t>(j0 + kTile) : nullptr;
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t c = 0; c < chunks; ++c) {
        _tile_loadd(2, k0 + 32 * c, p.key_row_bytes());
        if (k1 != nullptr) _tile_loadd(3, k1 + 32 * c, p.key_row_bytes());
        // tile numbers are immediates
        if (c == 0) { _tile_dpbf16ps(0, 2, 4); if (k1 != nullptr) _tile_dpbf16ps(1, 3, 4); }
        if (c == 1) { _tile_dpbf16ps(0, 2, 5); if (k1 != nullptr) _tile_dpbf16ps(1, 3, 5); }
        if (c == 2) { _tile_dpbf16ps(0, 2, 6); if (k1 != nullptr) _tile_dpbf16ps(1, 3, 6); }
        if (c == 3) { _tile_dpbf16ps(0, 2, 7); if (k1 != nullptr) _tile_dpbf16ps(1, 3, 7); }
      }
      _tile_stored(0, st[0], 64);
      if (k1 != nullptr) _tile_stored(1, st[kTile], 64);
    } else {
      for (int g = 0; g < groups; ++g) {  // S^T of 16 keys, Q^T reloaded per 32 of D
        const uint16_t* k = p.key<uint16_t>(j0 + g * kTile);
        _tile_zero(0);
        for (int64_t c = 0; c < chunks; ++c) {
          _tile_loadd(2, k + 32 * c, p.key_row_bytes());
          _tile_loadd(3, qt[c], 64);
          _tile_dpbf16ps(0, 2, 3);
        }
        _tile_stored(0, st[g * kTile], 64);
      }
    }
    // Mask, block max, NaN rows.
    const int keys = groups * kTile;
    __m512 block_max = neg_inf;
    for (int j = 0; j < keys; ++j) {
      const __m512i key = _mm512_set1_epi32(static_cast<int32_t>(j0 + j));
      const __mmask16 seen = _mm512_cmpge_epi32_mask(key, lo) & _mm512_cmplt_epi32_mask(key, hi);
      const __m512 s = _mm512_mask_mul_ps(neg_inf, seen, _mm512_load_ps(st[j]), q_scale);
      nan_rows |= _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q);
      block_max = _mm512_max_ps(block_max, s);
      _mm512_store_ps(st[j], s);
    }
    const __m512 m_new = _mm512_max_ps(m, block_max);
    const __mmask16 none = _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ);
    const __m512 shift = _mm512_mask_blend_ps(none, m_new, _mm512_setzero_ps());
    // exactly 1 where the max is unchanged (the polynomial gives 1 + 7e-8 at 0)
    const __m512 rescale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, m_new, _CMP_EQ_OQ),
                                                exp2_nonpositive(_mm512_sub_ps(m, shift)),
                                                _mm512_set1_ps(1.0f));  // m = -inf: 0
    __m512 block_sum = _mm512_setzero_ps();
    for (int j = 0; j < keys; ++j) {
      const __m512 e = exp2_nonpositive(_mm512_sub_ps(_mm512_load_ps(st[j]), shift));
      block_sum = _mm512_add_ps(block_sum, e);
      _mm512_store_ps(st[j], e);
    }
    for (int j = keys; j < 2 * kTile; ++j) _mm512_store_ps(st[j], _mm512_setzero_ps());
    l = _mm512_fmadd_ps(l, rescale, block_sum);
    m = _mm512_mask_blend_ps(none, m_new, m);
    alignas(64) float factor[kTile];
    _mm512_store_ps(factor, rescale);
    for (int r = 0; r < p.rows; ++r) {
      if (factor[r] == 1.0f) continue;
      const __m512 f = _mm512_set1_ps(factor[r]);
      for (int64_t d = 0; d < Dv; d += 16) _mm512_storeu_ps(o + r * Dv + d, _mm512_mul_ps(f, _mm512_loadu_ps(o + r * Dv + d)));
    }
    // P as the A tile: pairs of keys per row.
    __m512i cols[16];
    for (int q = 0; q < kTile; ++q) {
      const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_load_ps(st[2 * q + 1]), _mm512_load_ps(st[2 * q]));
      cols[q] = interleave16(_mm512_castsi512_si256(reinterpret_cast<const __m512i&>(both)),
                             _mm512_extracti64x4_epi64(reinterpret_cast<const __m512i&>(both), 1));
    }
    transpose16(cols);
    for (int r = 0; r < kTile; ++r) _mm512_store_si512(pa[r], cols[r]);
    _tile_loadd(3, pa, 64);
    // O += P . V, 16 of Dv at a time. A group's 16 value rows lie in one page.
    const uint16_t* value_rows[2 * kTile];
    for (int g = 0; g < 2; ++g) {
      const uint16_t* base = g < groups ? p.value<uint16_t>(j0 + g * kTile) : nullptr;
      for (int i = 0; i < kTile; ++i) {
        value_rows[g * kTile + i] = base != nullptr && j0 + g * kTile + i < p.j1 ? base + i * p.v_row : nullptr;
      }
    }
    for (int64_t d = 0; d < Dv; d += 16) {
      for (int q = 0; q < kTile; ++q) {
        const uint16_t *ra = value_rows[2 * q], *rb = value_rows[2 * q + 1];
        const __m256i a = ra != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ra + d)) : zero256;
        const __m256i b = rb != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + d)) : zero256;
        _mm512_store_si512(vb[d / 16][q], interleave16(a, b));
      }
    }
    for (int64_t d = 0; d < Dv; d += 32) {  // two 16-column slices on tiles 0 and 1
      const bool second = d + 16 < Dv;
      _tile_loadd(0, o + d, Dv * 4);
      _tile_loadd(2, vb[d / 16], 64);
      _tile_dpbf16ps(0, 3, 2);
      if (second) {
        _tile_loadd(1, o + d + 16, Dv * 4);
        _tile_loadd(4, vb[d / 16 + 1], 64);
        _tile_dpbf16ps(1, 3, 4);
      }
      _tile_stored(0, o + d, Dv * 4);
      if (second) _tile_stored(1, o + d + 16, Dv * 4);
    }
    if (resident && chunks > 0) _tile_loadd(4, qt[0], 64);  // tile 4 held V: Q^T back
  }
  _tile_release();

  alignas(64) float m_a[kTile], l_a[kTile];
  _mm512_store_ps(m_a, m);
  _mm512_store_ps(l_a, l);
  for (int r = 0; r < p.rows; ++r) {
    m_out[r] = (nan_rows >> r) & 1 ? std::numeric_limits<float>::quiet_NaN() : m_a[r];
    l_out[r] = l_a[r];
    if ((nan_rows >> r) & 1) {
      for (int64_t d = 0; d < Dv; ++d) o[r * Dv + d] = std::numeric_limits<float>::quiet_NaN();
    }
  }
}

}  // namespace

PagedRowsFn amx_paged_rows_kernel() { return amx_paged_rows; }

}  // namespace cpu
}  // namespace hetero

#else  // no AMX in this build

namespace hetero {
namespace cpu {
PagedRowsFn amx_paged_rows_kernel() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
