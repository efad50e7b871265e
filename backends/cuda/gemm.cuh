// GEMM on the GPU: out = alpha * (a @ b) + beta * bias, float32 accumulation.
//
// The classic shared-memory tiling (as in CUTLASS's "threadblock tile / warp
// tile" hierarchy, without its software pipelining): each block owns a
// BM x BN tile of out and walks K in steps of BK,
//
//   for k0 in K step BK:
//     As = a[m0:+BM, k0:+BK], Bs = b[k0:+BK, n0:+BN]    global -> shared
//     acc += As @ Bs                                      tensor cores or SIMT
//   out[m0:+BM, n0:+BN] = alpha * acc + beta * bias       epilogue, any strides
//
// Operand tiles are stored in shared memory in the orientation of their
// contiguous global dimension (template flags kAKFast, kBKFast), so both
// `x @ w` and `x @ w.t()` load with 16-byte moves, and tensor-core fragments
// read them as row- or column-major. Accumulating in float32 and writing out
// once rounds a 16-bit output exactly once.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backends/cuda/runtime.h"
#include "backends/cuda/tiles.cuh"

namespace hetero {
namespace gpu {

// ------------------------------------------------------------- configuration

struct GemmTile {
  static constexpr int BM = 128, BN = 128, BK = 32;
  static constexpr int kThreads = 256;
  // Tensor cores: 8 warps as 2 x 4, each a 64 x 32 tile of 4 x 2 fragments.
  static constexpr int kWarpsM = 2, kWarpsN = 4;
  static constexpr int WM = BM / kWarpsM, WN = BN / kWarpsN;
  static constexpr int FM = WM / 16, FN = WN / 16;
  // SIMT: 16 x 16 threads, each 8 x 8 outputs strided by 16 (conflict-free
  // shared-memory reads: a warp reads 16 consecutive columns).
  static constexpr int TM = BM / 16, TN = BN / 16;
  // Row pitches pad by 8 elements (16 bytes) against bank conflicts while
  // keeping every 16-row fragment 32-byte aligned, as wmma requires.
  static constexpr int kPad = 8;
};
static_assert(GemmTile::kWarpsM * GemmTile::kWarpsN * 32 == GemmTile::kThreads, "8 warps");

// Up to kMaxDims - 2 batch dims, flattened into blockIdx.z.
constexpr int kMaxBatchDims = 6;

struct GemmArgs {
  const uint16_t* a;
  const uint16_t* b;
  void* out;
  const void* bias;  // null: no bias term
  DType out_dtype, bias_dtype;
  int64_t M, N, K;
  int64_t a_rs, a_cs, b_rs, b_cs, out_rs, out_cs, bias_rs, bias_cs;  // matrix strides
  int batch_dims;
  int64_t batch0;  // first flattened batch index of this launch
  int64_t batch_sizes[kMaxBatchDims];
  int64_t a_bs[kMaxBatchDims], b_bs[kMaxBatchDims], out_bs[kMaxBatchDims], bias_bs[kMaxBatchDims];
  float alpha, beta;
  bool a_vectors, b_vectors;  // load_tile may use 16-byte moves
};

// ------------------------------------------------------------------- kernel

template <typename T>
__device__ __forceinline__ void gemm_store(const GemmArgs& g, void* out, const void* bias, int64_t m,
                                           int64_t n, float acc) {
  if (m >= g.M || n >= g.N) return;
  float v = g.alpha * acc;
  if (bias != nullptr) v += g.beta * load_as<T>(bias, g.bias_dtype, m * g.bias_rs + n * g.bias_cs);
  store_as<T>(out, g.out_dtype, m * g.out_rs + n * g.out_cs, v);
}

// One operand's ROWS x COLS shared tile at k offset `src`: `outer` (m for a,
// n for b) and k become rows and columns when k is the contiguous dimension
// (kKFast), columns and rows otherwise.
template <bool kKFast, int ROWS, int COLS, int PITCH>
__device__ __forceinline__ void load_operand(uint16_t* dst, const uint16_t* src, int64_t outer_left,
                                             int64_t k_left, int64_t outer_stride,
                                             int64_t k_stride, bool vectors) {
  if constexpr (kKFast) {
    load_tile<ROWS, COLS, PITCH, GemmTile::kThreads>(dst, src, outer_left, k_left, outer_stride,
                                                     k_stride, vectors);
  } else {
    load_tile<ROWS, COLS, PITCH, GemmTile::kThreads>(dst, src, k_left, outer_left, k_stride,
                                                     outer_stride, vectors);
  }
}

template <typename T, bool kTensorCores, bool kAKFast, bool kBKFast>
__global__ void gemm_kernel(GemmArgs g) {
  using C = GemmTile;
  // Shared tiles: As is BM x BK when a's k is contiguous (else BK x BM), Bs
  // is BN x BK when b's k is contiguous (else BK x BN).
  constexpr int kARows = kAKFast ? C::BM : C::BK, kACols = kAKFast ? C::BK : C::BM;
  constexpr int kBRows = kBKFast ? C::BN : C::BK, kBCols = kBKFast ? C::BK : C::BN;
  constexpr int kLdA = kACols + C::kPad, kLdB = kBCols + C::kPad;
  alignas(32) __shared__ uint16_t As[kARows * kLdA];
  alignas(32) __shared__ uint16_t Bs[kBRows * kLdB];

  // This block's batch element.
  int64_t rest = g.batch0 + blockIdx.z;
  int64_t a_off = 0, b_off = 0, out_off = 0, bias_off = 0;
  for (int d = g.batch_dims - 1; d >= 0; --d) {
    const int64_t i = rest % g.batch_sizes[d];
    rest /= g.batch_sizes[d];
    a_off += i * g.a_bs[d], b_off += i * g.b_bs[d];
    out_off += i * g.out_bs[d], bias_off += i * g.bias_bs[d];
  }
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * C::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * C::BN;
  const uint16_t* a = g.a + a_off + m0 * g.a_rs;
  const uint16_t* b = g.b + b_off + n0 * g.b_cs;
  void* out = static_cast<char*>(g.out) + out_off * (g.out_dtype == DType::float32 ? 4 : 2);
  const void* bias = g.bias == nullptr ? nullptr
      : static_cast<const char*>(g.bias) + bias_off * (g.bias_dtype == DType::float32 ? 4 : 2);

  const int tid = static_cast<int>(threadIdx.x);

#if HETERO_HAS_WMMA
  using WT [[maybe_unused]] = typename T::wmma_t;
  using ALayout [[maybe_unused]] =
      typename std::conditional<kAKFast, wmma::row_major, wmma::col_major>::type;
  using BLayout [[maybe_unused]] =
      typename std::conditional<kBKFast, wmma::col_major, wmma::row_major>::type;
  [[maybe_unused]] const int warp = tid / 32;
  [[maybe_unused]] const int wm = warp / C::kWarpsN, wn = warp % C::kWarpsN;
  [[maybe_unused]] wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc[C::FM][C::FN];
  if constexpr (kTensorCores) {
    HETERO_UNROLL
    for (int i = 0; i < C::FM; ++i) {
      HETERO_UNROLL
      for (int j = 0; j < C::FN; ++j) wmma::fill_fragment(frag_acc[i][j], 0.0f);
    }
  }
#endif
  [[maybe_unused]] float acc[C::TM][C::TN];  // SIMT path
  [[maybe_unused]] const int ty = tid / 16, tx = tid % 16;
  if constexpr (!kTensorCores) {
    HETERO_UNROLL
    for (int i = 0; i < C::TM; ++i) {
      HETERO_UNROLL
      for (int j = 0; j < C::TN; ++j) acc[i][j] = 0.0f;
    }
  }

  for (int64_t k0 = 0; k0 < g.K; k0 += C::BK) {
    const int64_t k_left = g.K - k0;
    load_operand<kAKFast, kARows, kACols, kLdA>(As, a + k0 * g.a_cs, g.M - m0, k_left, g.a_rs,
                                                 g.a_cs, g.a_vectors);
    load_operand<kBKFast, kBRows, kBCols, kLdB>(Bs, b + k0 * g.b_rs, g.N - n0, k_left, g.b_cs,
                                                 g.b_rs, g.b_vectors);
    block_sync();

#if HETERO_HAS_WMMA
    if constexpr (kTensorCores) {
      const WT* as = reinterpret_cast<const WT*>(As);
      const WT* bs = reinterpret_cast<const WT*>(Bs);
      HETERO_UNROLL
      for (int kk = 0; kk < C::BK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, ALayout> fa[C::FM];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, BLayout> fb[C::FN];
        HETERO_UNROLL
        for (int i = 0; i < C::FM; ++i) {
          const int m = wm * C::WM + i * 16;
          wmma::load_matrix_sync(fa[i], kAKFast ? as + m * kLdA + kk : as + kk * kLdA + m, kLdA);
        }
        HETERO_UNROLL
        for (int j = 0; j < C::FN; ++j) {
          const int n = wn * C::WN + j * 16;
          wmma::load_matrix_sync(fb[j], kBKFast ? bs + n * kLdB + kk : bs + kk * kLdB + n, kLdB);
        }
        HETERO_UNROLL
        for (int i = 0; i < C::FM; ++i) {
          HETERO_UNROLL
          for (int j = 0; j < C::FN; ++j) wmma::mma_sync(frag_acc[i][j], fa[i], fb[j], frag_acc[i][j]);
        }
      }
    }
#endif
    if constexpr (!kTensorCores) {
      HETERO_UNROLL
      for (int kk = 0; kk < C::BK; ++kk) {
        float av[C::TM], bv[C::TN];
        HETERO_UNROLL
        for (int i = 0; i < C::TM; ++i) {
          const int m = ty + 16 * i;
          av[i] = T::widen(kAKFast ? As[m * kLdA + kk] : As[kk * kLdA + m]);
        }
        HETERO_UNROLL
        for (int j = 0; j < C::TN; ++j) {
          const int n = tx + 16 * j;
          bv[j] = T::widen(kBKFast ? Bs[n * kLdB + kk] : Bs[kk * kLdB + n]);
        }
        HETERO_UNROLL
        for (int i = 0; i < C::TM; ++i) {
          HETERO_UNROLL
          for (int j = 0; j < C::TN; ++j) acc[i][j] += av[i] * bv[j];
        }
      }
    }
    block_sync();  // before the next tiles overwrite As, Bs
  }

  if constexpr (!kTensorCores) {
    HETERO_UNROLL
    for (int i = 0; i < C::TM; ++i) {
      HETERO_UNROLL
      for (int j = 0; j < C::TN; ++j) gemm_store<T>(g, out, bias, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j]);
    }
  }
#if HETERO_HAS_WMMA
  if constexpr (kTensorCores) {
    // Fragment layouts are opaque: each warp parks one 16 x 16 accumulator
    // in shared memory, then its lanes write it out element by element.
    alignas(32) __shared__ float stage[C::kThreads / 32][16 * 16];
    const int lane = tid % 32;
    HETERO_UNROLL
    for (int i = 0; i < C::FM; ++i) {
      HETERO_UNROLL
      for (int j = 0; j < C::FN; ++j) {
        wmma::store_matrix_sync(stage[warp], frag_acc[i][j], 16, wmma::mem_row_major);
        block_sync();
        for (int e = lane; e < 256; e += 32) {
          gemm_store<T>(g, out, bias, m0 + wm * C::WM + i * 16 + e / 16,
                        n0 + wn * C::WN + j * 16 + e % 16, stage[warp][e]);
        }
        block_sync();
      }
    }
  }
#endif
}

}  // namespace gpu
}  // namespace hetero
