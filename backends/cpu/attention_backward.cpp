// Flash-attention backward on the CPU (FlashAttention-2, Algorithm 2): the
// probabilities are recomputed block by block from the saved log-sum-exp, so
// memory stays O(S * D). Two independent sweeps avoid any atomics:
//
//   per key block j   (dK, dV):  for every query head of the group and every
//                                 query block i that sees it:
//       P  = exp(Q_i K_j^T * scale + mask - lse_i)       (bq x bk)
//       dV_j += P^T dO_i ;  dP = dO_i V_j^T ;  dS = P * (dP - rowsum(dO_i * O_i))
//       dK_j += dS^T Q_i                                   (times scale at the end)
//   per query block i (dQ):       dQ_i += dS K_j over visible key blocks j
//
// The products run on the packed micro-kernel through tile_product(), which
// packs both operands per call: simple, and a small cost next to the four
// products per block pair. Each query row's lse (in log2 units) and delta =
// rowsum(dO * O) are computed once, before both sweeps, since both read them
// for every block pair the row is in.
//
// When dS of every (query, key) pair fits in score_memory_bytes, the dK/dV
// sweep keeps it and the dQ sweep, which runs after it, only multiplies it by
// K: two of its three products and its exponentials are not recomputed.

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "attention.h"
#include "attention_common.h"
#include "thread_pool.h"
#include "hetero/view_checks.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kBQ = 64;  // query rows per block
constexpr int64_t kBK = 64;  // keys per block

// c (rows padded to the fp32 tile's mr, ldc >= n padded to its nr) = or +=
// a (m x depth) . b (depth x n).
void tile_product(const KernelSet& ks, const MatrixRef& a, const MatrixRef& b, int64_t m,
                  int64_t n, int64_t depth, float* c, int64_t ldc, bool accumulate,
                  float* packed_a, float* packed_b) {
  const FloatGemm& f = *ks.fp32_gemm;
  f.pack_a(a, m, depth, packed_a);
  f.pack_b(b, depth, n, packed_b);
  for (int64_t jr = 0; jr * f.nr < n; ++jr) {
    for (int64_t ir = 0; ir * f.mr < m; ++ir) {
      f.micro(depth, packed_a + ir * depth * f.mr, packed_b + jr * depth * f.nr,
              c + ir * f.mr * ldc + jr * f.nr, ldc, accumulate);
    }
  }
}

MatrixRef tile(const float* data, int64_t ld) { return {data, DType::float32, ld, 1}; }
MatrixRef tile_transposed(const float* data, int64_t ld) { return {data, DType::float32, 1, ld}; }

struct Call {
  const TensorView &dout, &q, &k, &v, &out, &lse, &dq, &dk, &dv;
  AttentionShape shape;
  ScoreMask mask;
  float scale;
};

struct Scratch {
  float *p, *dp, *acc_k, *acc_v, *packed_a, *packed_b;
  int64_t ld_d, ld_dv;  // row strides of acc_k (D) and acc_v (Dv), padded to the tile's nr

  static int64_t widest(const AttentionShape& g) { return std::max({g.D, g.Dv, kBK, kBQ}); }
  static int64_t floats(const AttentionShape& g, const FloatGemm& f) {
    const int64_t rows = round_up(std::max(kBQ, kBK), f.mr), w = round_up(widest(g), f.nr);
    return 2 * rows * kBK + 2 * rows * w + rows * w + w * w + 6 * 16;
  }
  static Scratch carve(float* base, const AttentionShape& g, const FloatGemm& f) {
    auto take = [&base](int64_t n) {
      float* p = base;
      base += round_up(n, 16);
      return p;
    };
    const int64_t rows = round_up(std::max(kBQ, kBK), f.mr), w = round_up(widest(g), f.nr);
    Scratch s;
    s.ld_d = round_up(g.D, f.nr);
    s.ld_dv = round_up(g.Dv, f.nr);
    s.p = take(rows * kBK);
    s.dp = take(rows * kBK);
    s.acc_k = take(rows * w);
    s.acc_v = take(rows * w);
    s.packed_a = take(rows * w);
    s.packed_b = take(w * w);
    return s;
  }
};

// Per query row of (b, h): lse in log2 units and delta = rowsum(dO * O), as
// [B][Hq][Sq] arrays.
struct RowStats {
  float *lse2, *delta;
  int64_t at(const AttentionShape& g, int64_t b, int64_t h, int64_t i) const {
    return (b * g.Hq + h) * g.Sq + i;
  }
};

// The stats of every query row of (b, h); `rows` holds 2 * Dv floats.
void row_stats(const KernelSet& ks, const Call& c, const RowStats& rs, float* rows, int64_t b,
               int64_t h) {
  const TensorView& l = c.lse;
  const int64_t Dv = c.shape.Dv;
  for (int64_t i = 0; i < c.shape.Sq; ++i) {
    const int64_t at = rs.at(c.shape, b, h, i);
    rs.lse2[at] = kLog2e * static_cast<const float*>(l.data)[b * l.strides[0] + h * l.strides[1] +
                                                             i * l.strides[2]];
    ks.widen_rows(rows_of(c.out, b, h, i), 1, Dv, rows, Dv);
    ks.widen_rows(rows_of(c.dout, b, h, i), 1, Dv, rows + Dv, Dv);
    float delta = 0.0f;
    for (int64_t x = 0; x < Dv; ++x) delta += rows[x] * rows[Dv + x];
    rs.delta[at] = delta;
  }
}

// For query rows [i0, i0 + bq) of head h against keys [j0, j0 + bk): the
// probabilities P into w.p and dS = P * (dO V^T - delta) into w.dp.
void block_gradients(const KernelSet& ks, const Call& c, const Scratch& w, const RowStats& rs,
                     int64_t b, int64_t h, int64_t i0, int64_t bq, int64_t j0, int64_t bk) {
  const AttentionShape& g = c.shape;
  const float* row_lse = rs.lse2 + rs.at(g, b, h, i0);
  const float* row_delta = rs.delta + rs.at(g, b, h, i0);
  const int64_t hkv = h / g.group();
  tile_product(ks, rows_of(c.q, b, h, i0), rows_of_transposed(c.k, b, hkv, j0), bq, bk, g.D, w.p,
               kBK, false, w.packed_a, w.packed_b);
  const float to_log2 = c.scale * kLog2e;
  for (int64_t r = 0; r < bq; ++r) {
    float* s = w.p + r * kBK;
    for (int64_t j = 0; j < bk; ++j) s[j] *= to_log2;
    c.mask.apply(s, b, h, i0 + r, j0, bk);
    ks.exp2_sum(s, bk, row_lse[r]);
  }
  tile_product(ks, rows_of(c.dout, b, h, i0), rows_of_transposed(c.v, b, hkv, j0), bq, bk, g.Dv,
               w.dp, kBK, false, w.packed_a, w.packed_b);
  for (int64_t r = 0; r < bq; ++r) {
    for (int64_t j = 0; j < bk; ++j) {
      w.dp[r * kBK + j] = w.p[r * kBK + j] * (w.dp[r * kBK + j] - row_delta[r]);
    }
  }
}

// dS as [B][Hq][Sq][Sk] floats, kept from the dK/dV sweep for the dQ sweep;
// data is null where it does not fit (the dQ sweep then recomputes it).
struct KeptScores {
  float* data;
  float* at(const AttentionShape& g, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return data + ((b * g.Hq + h) * g.Sq + i) * g.Sk + j;
  }
};

// acc (rows x cols, row stride ld) * factor into rows [row0, row0 + rows) of t at (b, h).
void store_rows(const KernelSet& ks, const TensorView& t, int64_t b, int64_t h, int64_t row0,
                int64_t rows, int64_t cols, const float* acc, int64_t ld, float factor) {
  const int64_t first = b * t.strides[0] + h * t.strides[1] + row0 * t.strides[2];
  store_scaled_rows(ks, t, first, t.strides[2], t.strides[3], acc, ld, rows, cols, factor);
}

void key_block(const KernelSet& ks, const Call& c, const Scratch& w, const RowStats& rs,
               const KeptScores& kept, int64_t b, int64_t hkv, int64_t j0) {
  const AttentionShape& g = c.shape;
  const int64_t bk = std::min(kBK, g.Sk - j0);
  const int64_t rows = round_up(bk, ks.fp32_gemm->mr);
  std::memset(w.acc_k, 0, sizeof(float) * static_cast<size_t>(rows * w.ld_d));
  std::memset(w.acc_v, 0, sizeof(float) * static_cast<size_t>(rows * w.ld_dv));
  // Under causal, query i sees key j0 only if i + offset >= j0.
  const int64_t first_row = c.mask.causal ? std::max<int64_t>(0, j0 - g.causal_offset()) : 0;
  for (int64_t h = hkv * g.group(); h < (hkv + 1) * g.group(); ++h) {
    for (int64_t i0 = first_row / kBQ * kBQ; i0 < g.Sq; i0 += kBQ) {
      const int64_t bq = std::min(kBQ, g.Sq - i0);
      block_gradients(ks, c, w, rs, b, h, i0, bq, j0, bk);
      if (kept.data != nullptr) {
        for (int64_t r = 0; r < bq; ++r) {
          std::memcpy(kept.at(g, b, h, i0 + r, j0), w.dp + r * kBK, sizeof(float) * static_cast<size_t>(bk));
        }
      }
      tile_product(ks, tile_transposed(w.p, kBK), rows_of(c.dout, b, h, i0), bk, g.Dv, bq, w.acc_v,
                   w.ld_dv, true, w.packed_a, w.packed_b);
      tile_product(ks, tile_transposed(w.dp, kBK), rows_of(c.q, b, h, i0), bk, g.D, bq, w.acc_k,
                   w.ld_d, true, w.packed_a, w.packed_b);
    }
  }
  store_rows(ks, c.dk, b, hkv, j0, bk, g.D, w.acc_k, w.ld_d, c.scale);
  store_rows(ks, c.dv, b, hkv, j0, bk, g.Dv, w.acc_v, w.ld_dv, 1.0f);
}

// Every key block that query block i0 sees was visited by the dK/dV sweep (it
// starts at the query block holding the first row that sees the keys), so the
// kept dS covers [i0, i0 + bq) x [0, key_end) whole.
void query_block(const KernelSet& ks, const Call& c, const Scratch& w, const RowStats& rs,
                 const KeptScores& kept, int64_t b, int64_t h, int64_t i0) {
  const AttentionShape& g = c.shape;
  const int64_t bq = std::min(kBQ, g.Sq - i0);
  std::memset(w.acc_k, 0, sizeof(float) * static_cast<size_t>(round_up(bq, ks.fp32_gemm->mr) * w.ld_d));
  int64_t key_end = g.Sk;
  if (c.mask.causal) key_end = std::max<int64_t>(0, std::min(g.Sk, i0 + bq + g.causal_offset()));
  for (int64_t j0 = 0; j0 < key_end; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    MatrixRef ds = tile(w.dp, kBK);
    if (kept.data != nullptr) {
      ds = tile(kept.at(g, b, h, i0, j0), g.Sk);
    } else {
      block_gradients(ks, c, w, rs, b, h, i0, bq, j0, bk);
    }
    tile_product(ks, ds, rows_of(c.k, b, h / g.group(), j0), bq, g.D, bk, w.acc_k, w.ld_d, true,
                 w.packed_a, w.packed_b);
  }
  store_rows(ks, c.dq, b, h, i0, bq, g.D, w.acc_k, w.ld_d, c.scale);
}

}  // namespace

Status attention_backward(const TensorView& dout, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const TensorView& lse,
                          const TensorView* mask, bool causal, double scale, const TensorView& dq,
                          const TensorView& dk, const TensorView& dv, int num_threads,
                          int64_t score_memory_bytes) {
  try {
    AttentionShape g;
    const TensorView* grads[4] = {&dout, &dq, &dk, &dv};
    Status s = check_num_threads(num_threads);
    if (s.ok()) s = validate_attention(q, k, v, mask, out, &lse, grads, &g);
    if (!s.ok()) return s;
    const Call c{dout, q, k, v, out, lse, dq, dk, dv, g, ScoreMask{mask, causal, g.causal_offset()},
                 static_cast<float>(scale)};
    const int64_t key_items = g.B * g.Hkv * ceil_div(g.Sk, kBK);
    const int64_t query_items = g.B * g.Hq * ceil_div(g.Sq, kBQ);
    const int64_t work = g.B * g.Hq * g.Sq * std::max<int64_t>(g.Sk, 1) * (g.D + g.Dv);
    const int threads = threads_for_work(num_threads, work, int64_t{1} << 17);
    const KernelSet& ks = active_kernels();
    const std::vector<float*> scratch = per_thread_scratch(threads, Scratch::floats(g, *ks.fp32_gemm));
    thread_local Workspace stats_memory;
    const int64_t rows = g.B * g.Hq * g.Sq;
    float* stats = stats_memory.reserve(round_up(rows, 16) + rows);
    const RowStats rs{stats, stats + round_up(rows, 16)};
    thread_local Workspace kept_memory;  // kept for the calling thread's next call
    const int64_t pairs = rows * g.Sk;
    const bool keep = pairs > 0 && pairs <= score_memory_bytes / static_cast<int64_t>(sizeof(float));
    const KeptScores kept{keep ? kept_memory.reserve(pairs) : nullptr};
    parallel_run(threads, [&](int t) {
      float* rows = Scratch::carve(scratch[t], g, *ks.fp32_gemm).acc_k;  // at least 2 * Dv floats
      for (int64_t head = t; head < g.B * g.Hq; head += threads) {
        row_stats(ks, c, rs, rows, head / g.Hq, head % g.Hq);
      }
    });
    parallel_run(threads, [&](int t) {  // dK, dV
      const Scratch w = Scratch::carve(scratch[t], g, *ks.fp32_gemm);
      const int64_t blocks = ceil_div(g.Sk, kBK);
      for (int64_t item = t; item < key_items; item += threads) {
        const int64_t pair = item / blocks;
        key_block(ks, c, w, rs, kept, pair / g.Hkv, pair % g.Hkv, (item % blocks) * kBK);
      }
    });
    parallel_run(threads, [&](int t) {  // dQ, after every dS is kept
      const Scratch w = Scratch::carve(scratch[t], g, *ks.fp32_gemm);
      const int64_t blocks = ceil_div(g.Sq, kBQ);
      for (int64_t item = t; item < query_items; item += threads) {
        const int64_t head = item / blocks;
        query_block(ks, c, w, rs, kept, head / g.Hq, head % g.Hq, (item % blocks) * kBQ);
      }
    });
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("attention_backward: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
