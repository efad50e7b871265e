// out = alpha * (a @ b) + beta * bias when a has a few rows (decode: one
// token per sequence, or a few) and b is unit-stride along k (x @ w.t()) or
// n (x @ w).
//
// The BLIS path (gemm.cpp) packs b into float32 panels and then uses each
// panel once per 6 rows of a. With one row that is three passes over b's
// bytes (read, write fp32, read again) and 5 of 6 FMAs wasted, where a GEMV
// needs one pass: decode is bound by streaming the weight. Here b is read
// exactly once, straight from its storage, and the few rows of a (widened to
// float32 once per depth block) stay in cache.
//
// Threads split the columns (and batch elements). For each thread's columns,
// in chunks of kChunk:
//
//   for pc in K step KC:              A = float32(a[:, pc:+KC])      M x KC, L2
//     for jb in chunk step JB:        b[pc:+KC, jb:+JB], read once   reused by every row tile
//       C[:, jb:+JB] (+)= A . b[pc:+KC, jb:+JB]       (kernels.h small_m_dot / small_m_axpy)
//   out[:, chunk] = alpha * C + beta * bias           (C: fp32, gemm_problem.h store)
//
// Up to 48 rows this beats the 6 x 16 fp32 BLIS tile on both layouts
// (measured on an AVX2 Zen 1 with bench/cpu_bench.py, bench/RESULTS.md), up to
// 32 the avx512 set's 12 x 32 one (FloatGemm::small_m_rows). bf16 x bf16 with
// the avx512 set's pair-dot GEMM goes there from 8 rows up (measured, Zen 4).

#include "gemm_small_m.h"

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kMaxRows = 48;
constexpr int64_t kMinDotGemmRows = 8;  // see small_m_applies

// dot: a block of b is JB = 24 rows of w (a multiple of every tile width:
// 3, 4, 6, 8). The first row tile streams the block's rows from memory in
// runs of KC, the others reuse it from L2. Long runs keep the hardware
// prefetcher ahead: KC 4096 rather than 1024 made 8-16 rows 15-25% faster
// (Zen 1), and the block (192 KiB of bf16) still fits L2. Up to 4 rows make
// one row tile, which has no reuse, so its runs are longer still.
constexpr int64_t kDotJB = 24, kDotKC = 4096, kDotKCOneTile = 8192;
constexpr int64_t kRowsOneDotTile = 4;
// Beyond these many rows a bf16/fp16 block of w is widened to float32 once
// instead of by every row tile (measured): bf16's pair widening stays cheap
// up to 16 rows, fp16's vcvtph2ps up to 8 (M = 16 fp16: 9.3 -> 7.8 ms).
constexpr int64_t kWidenBf16Above = 16, kWidenFp16Above = 8;
// axpy: k advances row by row of b. 64 rows of 96 columns (24 KiB of fp32)
// stay in L1 while the row tiles (24-96 columns wide) sweep them.
constexpr int64_t kAxpyJB = 96, kAxpyKC = 64;
constexpr int64_t kChunk = 2016;  // columns per C tile: a multiple of both JBs
static_assert(kChunk % kDotJB == 0 && kChunk % kAxpyJB == 0, "whole blocks per chunk");

constexpr int64_t kABlockFloats = kMaxRows * kDotKC;
static_assert(kRowsOneDotTile * kDotKCOneTile <= kABlockFloats && kAxpyKC <= kDotKC,
              "the A block holds every blocking's M x KC");

// Elements of b a thread must stream to be worth waking (128 KiB of fp32): the call is
// bound by reading b once, not by its multiply-adds.
constexpr int64_t kMinWeightPerThread = int64_t{1} << 15;

struct Scratch {
  float* a_block;  // M x KC: float32 rows of a
  float* w_block;  // JB x KC: float32 rows of w, when widened
  float* acc;      // M x kChunk
};

void dot_columns(const KernelSet& kern, const Problem& p, const Gemm2d& g, int64_t j0, int64_t chunk,
                 const Scratch& s) {
  const int64_t kc_max = p.M <= kRowsOneDotTile ? kDotKCOneTile : kDotKC;
  const int64_t widen_above = g.b.dtype == DType::float16 ? kWidenFp16Above : kWidenBf16Above;
  const bool widen_w = g.b.dtype != DType::float32 && p.M > widen_above;
  for (int64_t pc = 0; pc < p.K; pc += kc_max) {
    const int64_t kc = std::min(kc_max, p.K - pc);
    kern.widen_rows({g.a.at(0, pc), g.a.dtype, g.a.row_stride, g.a.col_stride}, p.M, kc, s.a_block, kc);
    kern.order_dot_rows(s.a_block, p.M, kc, kc, widen_w ? DType::float32 : g.b.dtype);
    for (int64_t jb = 0; jb < chunk; jb += kDotJB) {
      const int64_t cols = std::min(kDotJB, chunk - jb);
      MatrixRef b{g.b.at(pc, j0 + jb), g.b.dtype, g.b.row_stride, g.b.col_stride};
      if (widen_w) {  // rows of w: w(j, k) = b(k, j)
        kern.widen_rows({b.data, b.dtype, b.col_stride, 1}, cols, kc, s.w_block, kc);
        b = {s.w_block, DType::float32, 1, kc};
      }
      kern.small_m_dot(b, kc, cols, s.a_block, kc, p.M, s.acc + jb, kChunk, pc > 0);
    }
  }
}

void axpy_columns(const KernelSet& kern, const Problem& p, const Gemm2d& g, int64_t j0, int64_t chunk,
                  const Scratch& s) {
  for (int64_t pc = 0; pc < p.K; pc += kAxpyKC) {
    const int64_t kc = std::min(kAxpyKC, p.K - pc);
    kern.widen_rows({g.a.at(0, pc), g.a.dtype, g.a.row_stride, g.a.col_stride}, p.M, kc, s.a_block, kc);
    for (int64_t jb = 0; jb < chunk; jb += kAxpyJB) {
      const MatrixRef b{g.b.at(pc, j0 + jb), g.b.dtype, g.b.row_stride, g.b.col_stride};
      kern.small_m_axpy(b, kc, std::min(kAxpyJB, chunk - jb), s.a_block, kc, p.M, s.acc + jb, kChunk, pc > 0);
    }
  }
}

// Columns [n0, n1) of one batch element.
void compute_columns(const KernelSet& kern, const Problem& p, const Gemm2d& g, int64_t n0,
                     int64_t n1, const Scratch& s) {
  for (int64_t j0 = n0; j0 < n1; j0 += kChunk) {
    const int64_t chunk = std::min(kChunk, n1 - j0);
    if (g.b.row_stride == 1) {
      dot_columns(kern, p, g, j0, chunk, s);
    } else {
      axpy_columns(kern, p, g, j0, chunk, s);
    }
    store(s.acc, kChunk, g, 0, j0, p.M, chunk, p.alpha, p.beta);
  }
}

}  // namespace

bool small_m_applies(const Problem& p) {
  const int32_t nb = p.b->ndim - 2;
  // With a bf16 pair-dot GEMM, bf16 calls of kMinDotGemmRows rows or more
  // run faster packed (one 8-row tile already keeps the dot units busy).
  const bool bf16_dot = p.a->dtype == DType::bfloat16 && p.b->dtype == DType::bfloat16 &&
                        active_kernels().bf16_gemm != nullptr;
  if (bf16_dot && p.M >= kMinDotGemmRows) return false;
  const int64_t max_rows = std::min(kMaxRows, active_kernels().fp32_gemm->small_m_rows);
  return p.M <= max_rows && p.K > 0 && (p.b->strides[nb] == 1 || p.b->strides[nb + 1] == 1);
}

Status run_small_m(const Problem& p, int requested_threads) {
  const KernelSet& kern = active_kernels();
  const int threads = threads_for_work(requested_threads, p.N * p.K * p.batches, kMinWeightPerThread);
  // Work items: (batch element, column part). Few batch elements: split
  // their columns; many: deal them out whole.
  const int64_t col_parts = std::max<int64_t>(1, threads / p.batches);
  const int64_t col_units = ceil_div(p.N, kDotJB);

  std::vector<float*> scratch;
  try {
    scratch = per_thread_scratch(threads, kABlockFloats + kDotJB * kDotKC + kMaxRows * kChunk);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: cannot allocate workspace: ") + e.what());
  }
  parallel_run(threads, [&](int t) {
    const Scratch s{scratch[t], scratch[t] + kABlockFloats, scratch[t] + kABlockFloats + kDotJB * kDotKC};
    for (int64_t item = t; item < p.batches * col_parts; item += threads) {
      int64_t u0, u1;
      split_range(col_units, col_parts, item % col_parts, &u0, &u1);
      const int64_t n0 = std::min(u0 * kDotJB, p.N), n1 = std::min(u1 * kDotJB, p.N);
      if (n1 > n0) compute_columns(kern, p, p.element(item / col_parts), n0, n1, s);
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace hetero
