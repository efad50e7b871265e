// Paged attention rows on AVX-512 vectors (kernels.h PagedRows), the decode
// kernel of the avx512 set. Compiled with the flags of kernels_avx512.cpp;
// the bf16 pair products run only where the CPU has AVX512_BF16.
//
// What it computes: for R <= 8 query rows per key/value head (a GQA group's
// heads of one or a few queries) and up to 16 consecutive heads of one
// sequence, the online softmax over keys [j0, j1) of a paged cache, leaving
// (O, m, l) as attention_paged.cpp's generic path does. Decode reads each
// key and value once for all R rows, so the kernel must keep up with memory:
// a GQA group of 4 does 4 flops per bf16 byte of the cache. Taking the heads
// together makes each key's rows (Hkv x D, contiguous in the usual
// (blocks, block_size, Hkv, D) layout) one run of memory instead of Hkv
// strided pieces, which the memory system streams far better.
//
// The algorithm, per group of 16 keys (row pointers found by walking the block
// table), for each head:
//   S (R x 16)   four keys at a time, 4R accumulators over D: a 512-bit load
//                of a key chunk feeds R products (vdpbf16ps on bf16 pairs, or
//                FMAs on float32); the accumulators are summed across lanes
//                by a transposing tree, so lane j of row r's scores is key j.
//   mask, m, l, P = 2^(S - m)   one vector per row, l kept per lane
//   O (R x Dv)  += P . V   bf16: two value rows interleaved into (v[j][d],
//                v[j+1][d]) words times the broadcast pair (p[j], p[j+1]),
//                which leaves O's columns permuted within each 32 (undone at
//                the end); float32: each value row times a broadcast p[j].
//                O lives in the caller's buffer and passes over it in slices
//                of Dv sized to keep the accumulators in registers, folding in
//                the rescale of the online softmax.
// While a head's keys and values are multiplied, the same head's rows of the
// next group are prefetched into L2, one row per key.
// P is rounded to bf16 for the pair products, as flash attention does on GPUs.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "avx512_vectors.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int kGroup = 16;      // keys per group: the lanes of a score vector
using avx512::exp2_nonpositive;
using avx512::load16;

// Horizontal sums by a transposing tree (pairs of vectors interleaved and
// added), in two steps. fold4: lane k of each 128-bit lane of the result =
// part of the sum of a[k]'s lanes (9 instructions). fold16: lane 4i + k of
// the result = the whole sum of a[k] of the ith fold4 (9 more).
inline __m512 fold4(const __m512* a) {
  const __m512 t01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
  const __m512 t23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
  const __m512d x = _mm512_castps_pd(t01), y = _mm512_castps_pd(t23);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}
inline __m512 fold16(const __m512* u) {
  const __m512 c0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
  const __m512 c1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c0, c1, 0x88), _mm512_shuffle_f32x4(c0, c1, 0xdd));
}

inline float max_lanes(__m512 v) {
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xb1));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, 0x4e));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, 0xb1));
  return _mm512_cvtss_f32(v);
}

inline float exp2_scalar(float t) { return _mm512_cvtss_f32(exp2_nonpositive(_mm512_set1_ps(t))); }

// How the products multiply: Widened<T> in float32 FMAs (T = float, Half or
// BFloat16 widened as loaded), Pairs in bf16 pairs by vdpbf16ps.
template <class T>
struct Widened {
  using Elem = T;
  static constexpr bool pairs = false;
};
struct Pairs {
  using Elem = BFloat16;
  static constexpr bool pairs = true;
};

// Row pointers of consecutive keys, walking the block table one key at a time.
template <class T>
struct PageCursor {
  const PagedRows& p;
  int64_t page, offset;
  PageCursor(const PagedRows& rows, int64_t j) : p(rows), page(j / rows.block_size), offset(j % rows.block_size) {}
  void next(const T** key, const T** value) {
    const int64_t block = p.table[page * p.table_stride];
    *key = static_cast<const T*>(p.k_cache) + block * p.k_block + offset * p.k_row;
    *value = static_cast<const T*>(p.v_cache) + block * p.v_block + offset * p.v_row;
    if (++offset == p.block_size) {
      offset = 0;
      ++page;
    }
  }
};

// Asks for row[0, bytes), a row of the next group, into L2 while this group is
// multiplied (a hint to L1 measured slower: the lines evict the group in use).
// Key rows go one per key among the score products; value rows as each
// head's P . V begins.
inline void prefetch_row(const void* row, int64_t bytes) {
  for (int64_t x = 0; x < bytes; x += 64) _mm_prefetch(static_cast<const char*>(row) + x, _MM_HINT_T1);
}

// S (R x 16) of one head: lane j of scores[r] = q_r . key j (unscaled).
// Four keys at a time, 4R accumulators over D: each chunk of a query row is
// loaded once for the four keys (on CPUs that split 512-bit loads in two,
// loads rather than products limit this loop); each row's four accumulators
// are folded at once, the four folds of the group at the end.
template <int R, class Mode>
inline void score_group(const typename Mode::Elem* const* keys, int n, const typename Mode::Elem* const* next,
                        int n_next, int64_t head, int64_t D, const void* const* q, __m512* scores) {
  constexpr int kKeys = 4;
  const int64_t row_bytes = D * static_cast<int64_t>(sizeof(typename Mode::Elem));
  __m512 folded[R][kGroup / kKeys];
  for (int i0 = 0; i0 < kGroup; i0 += kKeys) {
    __m512 acc[kKeys][R];
    const typename Mode::Elem* key[kKeys];
    for (int i = 0; i < kKeys; ++i) {
      for (int r = 0; r < R; ++r) acc[i][r] = _mm512_setzero_ps();
      key[i] = i0 + i < n ? keys[i0 + i] + head : nullptr;
      if (i0 + i < n_next) prefetch_row(next[i0 + i] + head, row_bytes);
    }
    if (i0 < n) {
      constexpr int64_t kChunk = Mode::pairs ? 32 : 16;
      for (int64_t d = 0; d < D; d += kChunk) {
        if constexpr (Mode::pairs) {
          __m512bh qd[R];
          for (int r = 0; r < R; ++r) qd[r] = (__m512bh)_mm512_loadu_si512(static_cast<const uint16_t*>(q[r]) + d);
          for (int i = 0; i < kKeys; ++i) {
            if (key[i] == nullptr) break;
            const __m512bh k = (__m512bh)_mm512_loadu_si512(key[i] + d);
            for (int r = 0; r < R; ++r) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], k, qd[r]);
          }
        } else {
          __m512 qd[R];
          for (int r = 0; r < R; ++r) qd[r] = _mm512_loadu_ps(static_cast<const float*>(q[r]) + d);
          for (int i = 0; i < kKeys; ++i) {
            if (key[i] == nullptr) break;
            const __m512 k = load16(key[i] + d);
            for (int r = 0; r < R; ++r) acc[i][r] = _mm512_fmadd_ps(k, qd[r], acc[i][r]);
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 keys4[kKeys] = {acc[0][r], acc[1][r], acc[2][r], acc[3][r]};
      folded[r][i0 / kKeys] = fold4(keys4);
    }
  }
  for (int r = 0; r < R; ++r) scores[r] = fold16(folded[r]);
}

// O (R x Dv, row stride Dv) = O * factor + P . V for one head's 16 keys.
template <int R, class Mode>
inline void accumulate_values(const typename Mode::Elem* const* values, int n, const typename Mode::Elem* const* next,
                              int n_next, int64_t head, int64_t Dv, const float* factor,
                              const uint16_t (*pb)[kGroup], const float (*pf)[kGroup], float* o) {
  for (int i = 0; i < n_next; ++i) prefetch_row(next[i] + head, Dv * static_cast<int64_t>(sizeof(typename Mode::Elem)));
  // Slices of Dv small enough for R rows' accumulators to stay in registers.
  constexpr int64_t kSlice = Mode::pairs ? 32 * std::max(1, 8 / R) : 16 * std::max(1, 16 / R);
  for (int64_t d0 = 0; d0 < Dv; d0 += kSlice) {
    const int64_t width = std::min(kSlice, Dv - d0);
    __m512 acc[R][kSlice / 16];
    for (int r = 0; r < R; ++r) {
      for (int64_t c = 0; c < kSlice / 16; ++c) {
        acc[r][c] = 16 * c < width ? _mm512_mul_ps(_mm512_loadu_ps(o + r * Dv + d0 + 16 * c), _mm512_set1_ps(factor[r]))
                                   : _mm512_setzero_ps();
      }
    }
    if constexpr (Mode::pairs) {
      for (int q = 0; 2 * q < n; ++q) {
        const auto* va = values[2 * q] + head + d0;
        const auto* vb = 2 * q + 1 < n ? values[2 * q + 1] + head + d0 : nullptr;
        __m512i pair[R];
        for (int r = 0; r < R; ++r) {
          uint32_t word;
          std::memcpy(&word, pb[r] + 2 * q, sizeof(word));
          pair[r] = _mm512_set1_epi32(static_cast<int32_t>(word));
        }
        for (int64_t c = 0; c < kSlice / 32; ++c) {
          if (32 * c >= width) break;
          const __m512i a = _mm512_loadu_si512(va + 32 * c);
          const __m512i b = vb != nullptr ? _mm512_loadu_si512(vb + 32 * c) : _mm512_setzero_si512();
          const __m512bh lo = (__m512bh)_mm512_unpacklo_epi16(a, b), hi = (__m512bh)_mm512_unpackhi_epi16(a, b);
          for (int r = 0; r < R; ++r) {
            acc[r][2 * c] = _mm512_dpbf16_ps(acc[r][2 * c], lo, (__m512bh)pair[r]);
            acc[r][2 * c + 1] = _mm512_dpbf16_ps(acc[r][2 * c + 1], hi, (__m512bh)pair[r]);
          }
        }
      }
    } else {
      for (int j = 0; j < n; ++j) {
        for (int64_t c = 0; c < kSlice / 16; ++c) {
          if (16 * c >= width) break;
          const __m512 v = load16(values[j] + head + d0 + 16 * c);
          for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(pf[r][j]), v, acc[r][c]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int64_t c = 0; c < kSlice / 16; ++c) {
        if (16 * c < width) _mm512_storeu_ps(o + r * Dv + d0 + 16 * c, acc[r][c]);
      }
    }
  }
}

template <int R, class Mode>
void rows_kernel(const PagedRows& p, float* o, float* m_out, float* l_out) {
  using T = typename Mode::Elem;
  const int64_t D = p.D, Dv = p.Dv, H = p.heads, rows = H * R;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  // Q as the score product's operand: bf16 rows as given, or float32 rows.
  const void* q[kPagedVectorHeads][R];
  for (int64_t h = 0; h < H; ++h) {
    for (int r = 0; r < R; ++r) {
      const T* row = static_cast<const T*>(p.q[r]) + h * p.q_head;
      q[h][r] = row;
      if (!Mode::pairs) {
        float* wide = p.scratch + (h * R + r) * D;
        for (int64_t d = 0; d < D; d += 16) _mm512_storeu_ps(wide + d, load16(row + d));
        q[h][r] = wide;
      }
    }
  }
  std::memset(o, 0, sizeof(float) * static_cast<size_t>(rows * Dv));
  // Per row (head-major): m, the lanes of l, whether a score was NaN.
  float m[kPagedVectorHeads * R];
  alignas(64) float l[kPagedVectorHeads * R][16];
  bool nan_row[kPagedVectorHeads * R];
  for (int64_t x = 0; x < rows; ++x) {
    m[x] = neg_inf;
    std::fill(l[x], l[x] + 16, 0.0f);
    nan_row[x] = false;
  }
  const __m512 q_scale = _mm512_set1_ps(p.q_scale);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  alignas(64) float factor[R];                         // a row's rescale of O for this group
  alignas(64) float pf[Mode::pairs ? 1 : R][kGroup];   // P, float32
  alignas(64) uint16_t pb[Mode::pairs ? R : 1][kGroup];  // P, bf16 (pairs)
  const T *krow[2][kGroup], *vrow[2][kGroup];  // this group's rows (first head) and the next one's
  PageCursor<T> cursor(p, p.j0);
  auto fill = [&](int64_t g, int slot) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, p.j1 - g));
    for (int i = 0; i < n; ++i) cursor.next(&krow[slot][i], &vrow[slot][i]);
  };
  if (p.j0 < p.j1) fill(p.j0, 0);

  for (int64_t g = p.j0, slot = 0; g < p.j1; g += kGroup, slot ^= 1) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, p.j1 - g));
    const int n_next = static_cast<int>(std::clamp<int64_t>(p.j1 - g - kGroup, 0, kGroup));
    if (n_next > 0) fill(g + kGroup, static_cast<int>(slot ^ 1));
    const __m512i key = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(g)));
    for (int64_t h = 0; h < H; ++h) {
      __m512 scores[R];
      score_group<R, Mode>(krow[slot], n, krow[slot ^ 1], n_next, h * p.k_head, D, q[h], scores);
      // Mask, online softmax, P.
      for (int r = 0; r < R; ++r) {
        const int64_t x = h * R + r;
        const __mmask16 seen = _mm512_cmpge_epi32_mask(key, _mm512_set1_epi32(static_cast<int32_t>(p.lo[r]))) &
                               _mm512_cmplt_epi32_mask(key, _mm512_set1_epi32(static_cast<int32_t>(p.hi[r])));
        const __m512 s = _mm512_mask_mul_ps(_mm512_set1_ps(neg_inf), seen, scores[r], q_scale);
        nan_row[x] |= _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q) != 0;
        const float m_new = std::max(m[x], max_lanes(s));
        __m512 e = _mm512_setzero_ps();
        factor[r] = 1.0f;
        if (m_new != neg_inf) {
          if (m_new != m[x]) factor[r] = exp2_scalar(m[x] - m_new);  // m = -inf: 0
          e = exp2_nonpositive(_mm512_sub_ps(s, _mm512_set1_ps(m_new)));
          _mm512_store_ps(l[x], _mm512_fmadd_ps(_mm512_load_ps(l[x]), _mm512_set1_ps(factor[r]), e));
          m[x] = m_new;
        }
        if constexpr (Mode::pairs) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(pb[r]), (__m256i)_mm512_cvtneps_pbh(e));
        } else {
          _mm512_store_ps(pf[r], e);
        }
      }
      accumulate_values<R, Mode>(vrow[slot], n, vrow[slot ^ 1], n_next, h * p.v_head, Dv, factor, pb, pf,
                                 o + h * R * Dv);
    }
  }

  if constexpr (Mode::pairs) {  // O's columns back in order within each 32
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int64_t x = 0; x < rows; ++x) {
      for (int64_t d = 0; d < Dv; d += 32) {
        const __m512 lo = _mm512_loadu_ps(o + x * Dv + d), hi = _mm512_loadu_ps(o + x * Dv + d + 16);
        _mm512_storeu_ps(o + x * Dv + d, _mm512_permutex2var_ps(lo, first, hi));
        _mm512_storeu_ps(o + x * Dv + d + 16, _mm512_permutex2var_ps(lo, second, hi));
      }
    }
  }
  for (int64_t x = 0; x < rows; ++x) {
    float sum = 0.0f;
    for (float lane : l[x]) sum += lane;
    l_out[x] = sum;
    m_out[x] = m[x];
    if (nan_row[x]) {
      m_out[x] = std::numeric_limits<float>::quiet_NaN();
      std::fill(o + x * Dv, o + (x + 1) * Dv, std::numeric_limits<float>::quiet_NaN());
    }
  }
}

template <class Mode>
void by_rows(const PagedRows& p, float* o, float* m, float* l) {
  switch (p.rows) {
    case 1: return rows_kernel<1, Mode>(p, o, m, l);
    case 2: return rows_kernel<2, Mode>(p, o, m, l);
    case 3: return rows_kernel<3, Mode>(p, o, m, l);
    case 4: return rows_kernel<4, Mode>(p, o, m, l);
    case 5: return rows_kernel<5, Mode>(p, o, m, l);
    case 6: return rows_kernel<6, Mode>(p, o, m, l);
    case 7: return rows_kernel<7, Mode>(p, o, m, l);
    default: return rows_kernel<8, Mode>(p, o, m, l);
  }
}

void widened_rows(const PagedRows& p, float* o, float* m, float* l) {
  if (p.dtype == DType::float32) return by_rows<Widened<float>>(p, o, m, l);
  if (p.dtype == DType::float16) return by_rows<Widened<Half>>(p, o, m, l);
  return by_rows<Widened<BFloat16>>(p, o, m, l);
}

void pair_dot_rows(const PagedRows& p, float* o, float* m, float* l) {
  if (p.dtype == DType::bfloat16) return by_rows<Pairs>(p, o, m, l);
  return widened_rows(p, o, m, l);
}

}  // namespace

PagedRowsFn avx512_paged_rows_kernel(bool pair_dot) { return pair_dot ? pair_dot_rows : widened_rows; }

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64

namespace hetero {
namespace cpu {
PagedRowsFn avx512_paged_rows_kernel(bool) { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
