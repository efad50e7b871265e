// Flash attention forward on the GPU (FlashAttention-2, Dao 2023: one block
// per query tile, an online softmax over key tiles, nothing of size Sq x Sk
// ever stored).
//
// For a block's BQ query rows of one (batch, head):
//
//   Qs = q[rows]; O = 0; m = -inf; l = 0                    shared memory
//   for each key tile j0 (stopping at the causal diagonal):
//     KVs = k[j0:+BKV]              S = Qs @ KVs^T          (BQ x BKV, float)
//     KVs = v[j0:+BKV]              per row: s = S * scale + mask (log2 units)
//                                   m' = max(m, s); P = exp2(s - m') (rounded to T)
//                                   l = l * exp2(m - m') + sum(P); O *= exp2(m - m')
//     O += P @ KVs
//   out[rows] = O / l               (0 where l = 0: the row saw no key)
//
// Unlike FlashAttention-2, which keeps O in registers, O and S live in shared
// memory: the rescale is per row and tensor-core fragment layouts are opaque,
// and this keeps one kernel source correct on CUDA, HIP (64-wide wavefronts)
// and the host emulation. It costs a shared-memory round trip of O per key
// tile; a register-resident O is the next step where speed matters.
#pragma once

#include <cmath>
#include <cstdint>

#include "backends/cuda/runtime.h"
#include "backends/cuda/tiles.cuh"

namespace hetero {
namespace gpu {

// ------------------------------------------------------------- configuration

// Tiles per head dim, sized to stay under 48 KiB of static shared memory
// (and AMD's 64 KiB LDS): D = 64 -> 46 KiB, D = 128 -> 42 KiB.
template <int D>
struct AttentionTile;
template <>
struct AttentionTile<64> {
  static constexpr int BQ = 64, BKV = 32;
};
template <>
struct AttentionTile<128> {
  static constexpr int BQ = 32, BKV = 32;
};
constexpr int kAttentionThreads = 128;  // 4 warps (2 wavefronts on AMD)

struct AttentionArgs {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
  const void* mask;  // null: no mask
  void* out;
  DType mask_dtype;
  int64_t Sq, Sk, group;  // group: query heads per key/value head
  int64_t q_s[4], k_s[4], v_s[4], out_s[4], mask_s[4];
  float scale_log2;  // scale * log2(e): scores are kept in log2 units
  bool causal;
  bool q_vectors, k_vectors, v_vectors;
};

// ------------------------------------------------------------------- kernel

// max that keeps NaN (fmaxf drops it): a NaN score must reach the output,
// as it does in the float64 reference, not vanish into a zero row.
__device__ __forceinline__ float max_keep_nan(float a, float b) { return (a > b || a != a) ? a : b; }

template <typename T, int D, bool kTensorCores>
__global__ void attention_kernel(AttentionArgs g) {
  constexpr int BQ = AttentionTile<D>::BQ, BKV = AttentionTile<D>::BKV;
  constexpr int kThreads = kAttentionThreads;
  // Pitches: 16-bit rows pad by 8 elements, float rows by 4 (16 bytes),
  // which keeps 16-row fragments 32-byte aligned for wmma.
  constexpr int kLdQ = D + 8, kLdS = BKV + 4, kLdP = BKV + 8, kLdO = D + 4;
  alignas(32) __shared__ uint16_t Qs[BQ * kLdQ];
  alignas(32) __shared__ uint16_t KVs[BKV * kLdQ];  // the key tile, then the value tile
  alignas(32) __shared__ float S[BQ * kLdS];
  alignas(32) __shared__ uint16_t P[BQ * kLdP];
  alignas(32) __shared__ float O[BQ * kLdO];
  __shared__ float row_max[BQ], row_sum[BQ];

  const int tid = static_cast<int>(threadIdx.x);
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t hk = h / g.group;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * BQ;
  const uint16_t* q = g.q + b * g.q_s[0] + h * g.q_s[1] + q0 * g.q_s[2];
  const uint16_t* k = g.k + b * g.k_s[0] + hk * g.k_s[1];
  const uint16_t* v = g.v + b * g.v_s[0] + hk * g.v_s[1];
  const int64_t causal_offset = g.Sk - g.Sq;  // query i sees keys j <= i + causal_offset

  // Key tiles past the last row's diagonal are never loaded.
  int64_t kv_end = g.Sk;
  if (g.causal) {
    const int64_t last_row = (q0 + BQ < g.Sq ? q0 + BQ : g.Sq) - 1;
    const int64_t end = last_row + causal_offset + 1;
    kv_end = end < 0 ? 0 : (end < g.Sk ? end : g.Sk);
  }

  load_tile<BQ, D, kLdQ, kThreads>(Qs, q, g.Sq - q0, D, g.q_s[2], g.q_s[3], g.q_vectors);
  for (int e = tid; e < BQ * kLdO; e += kThreads) O[e] = 0.0f;
  for (int r = tid; r < BQ; r += kThreads) row_max[r] = -INFINITY, row_sum[r] = 0.0f;
  block_sync();

#if HETERO_HAS_WMMA
  using WT [[maybe_unused]] = typename T::wmma_t;
  [[maybe_unused]] const int warp = tid / 32;
  [[maybe_unused]] constexpr int kWarps = kThreads / 32;
#endif

  for (int64_t j0 = 0; j0 < kv_end; j0 += BKV) {
    load_tile<BKV, D, kLdQ, kThreads>(KVs, k + j0 * g.k_s[2], g.Sk - j0, D, g.k_s[2], g.k_s[3],
                                      g.k_vectors);
    block_sync();

    // S = Qs @ KVs^T
#if HETERO_HAS_WMMA
    if constexpr (kTensorCores) {
      const WT* qs = reinterpret_cast<const WT*>(Qs);
      const WT* ks = reinterpret_cast<const WT*>(KVs);
      for (int f = warp; f < (BQ / 16) * (BKV / 16); f += kWarps) {
        const int i = f / (BKV / 16), j = f % (BKV / 16);
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int d = 0; d < D; d += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, wmma::row_major> fq;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, wmma::col_major> fk;  // K^T
          wmma::load_matrix_sync(fq, qs + i * 16 * kLdQ + d, kLdQ);
          wmma::load_matrix_sync(fk, ks + j * 16 * kLdQ + d, kLdQ);
          wmma::mma_sync(acc, fq, fk, acc);
        }
        wmma::store_matrix_sync(S + i * 16 * kLdS + j * 16, acc, kLdS, wmma::mem_row_major);
      }
    }
#endif
    if constexpr (!kTensorCores) {
      for (int e = tid; e < BQ * BKV; e += kThreads) {
        const int r = e / BKV, c = e % BKV;
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += T::widen(Qs[r * kLdQ + d]) * T::widen(KVs[c * kLdQ + d]);
        S[r * kLdS + c] = dot;
      }
    }
    block_sync();

    // The value tile replaces the key tile while rows update their softmax.
    load_tile<BKV, D, kLdQ, kThreads>(KVs, v + j0 * g.v_s[2], g.Sk - j0, D, g.v_s[2], g.v_s[3],
                                      g.v_vectors);
    for (int r = tid; r < BQ; r += kThreads) {
      const int64_t i = q0 + r;
      float* s = S + r * kLdS;
      float tile_max = -INFINITY;
      for (int c = 0; c < BKV; ++c) {
        const int64_t j = j0 + c;
        bool visible = i < g.Sq && j < g.Sk && (!g.causal || j <= i + causal_offset);
        float x = s[c] * g.scale_log2;
        if (visible && g.mask != nullptr) {
          const int64_t at = b * g.mask_s[0] + h * g.mask_s[1] + i * g.mask_s[2] + j * g.mask_s[3];
          if (g.mask_dtype == DType::boolean) {
            visible = static_cast<const uint8_t*>(g.mask)[at] != 0;
          } else {
            x += 1.4426950408889634f * load_as<T>(g.mask, g.mask_dtype, at);
          }
        }
        s[c] = visible ? x : -INFINITY;
        tile_max = max_keep_nan(tile_max, s[c]);
      }
      const float m_old = row_max[r];
      const float m_new = max_keep_nan(m_old, tile_max);
      // A row that has seen no key yet keeps m = -inf; exp2(-inf - -inf)
      // would be NaN, so it gets P = 0 and an identity rescale instead.
      const bool empty = m_new == -INFINITY;
      const float rescale = empty ? 1.0f : exp2f(m_old - m_new);
      float sum = 0.0f;
      for (int c = 0; c < BKV; ++c) {
        const float p = empty ? 0.0f : exp2f(s[c] - m_new);
        sum += p;
        P[r * kLdP + c] = T::narrow(p);  // P meets V in the input dtype, as in FlashAttention
      }
      row_max[r] = m_new;
      row_sum[r] = row_sum[r] * rescale + sum;
      for (int c = 0; c < D; ++c) O[r * kLdO + c] *= rescale;
    }
    block_sync();

    // O += P @ KVs
#if HETERO_HAS_WMMA
    if constexpr (kTensorCores) {
      const WT* ps = reinterpret_cast<const WT*>(P);
      const WT* vs = reinterpret_cast<const WT*>(KVs);
      for (int f = warp; f < (BQ / 16) * (D / 16); f += kWarps) {
        const int i = f / (D / 16), j = f % (D / 16);
        float* o = O + i * 16 * kLdO + j * 16;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::load_matrix_sync(acc, o, kLdO, wmma::mem_row_major);
        for (int kk = 0; kk < BKV; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, wmma::row_major> fp;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, wmma::row_major> fv;
          wmma::load_matrix_sync(fp, ps + i * 16 * kLdP + kk, kLdP);
          wmma::load_matrix_sync(fv, vs + kk * kLdQ + j * 16, kLdQ);
          wmma::mma_sync(acc, fp, fv, acc);
        }
        wmma::store_matrix_sync(o, acc, kLdO, wmma::mem_row_major);
      }
    }
#endif
    if constexpr (!kTensorCores) {
      for (int e = tid; e < BQ * D; e += kThreads) {
        const int r = e / D, c = e % D;
        float sum = O[r * kLdO + c];
        for (int kk = 0; kk < BKV; ++kk) sum += T::widen(P[r * kLdP + kk]) * T::widen(KVs[kk * kLdQ + c]);
        O[r * kLdO + c] = sum;
      }
    }
    block_sync();  // before the next key tile overwrites KVs
  }

  for (int e = tid; e < BQ * D; e += kThreads) {
    const int r = e / D, c = e % D;
    const int64_t i = q0 + r;
    if (i >= g.Sq) continue;
    const float l = row_sum[r];
    const float value = l == 0.0f ? 0.0f : O[r * kLdO + c] / l;  // NaN l: NaN out
    static_cast<uint16_t*>(g.out)[b * g.out_s[0] + h * g.out_s[1] + i * g.out_s[2] + c * g.out_s[3]] =
        T::narrow(value);
  }
}

}  // namespace gpu
}  // namespace hetero
