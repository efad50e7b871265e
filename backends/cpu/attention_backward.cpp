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
// products per block pair.

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

// c (rows padded to kMR, ldc >= n padded to kNR) = or += a (m x depth) . b (depth x n).
void tile_product(const KernelSet& ks, const MatrixRef& a, const MatrixRef& b, int64_t m,
                  int64_t n, int64_t depth, float* c, int64_t ldc, bool accumulate,
                  float* packed_a, float* packed_b) {
  ks.pack_a(a, m, depth, packed_a);
  ks.pack_b(b, depth, n, packed_b);
  for (int64_t jr = 0; jr * kNR < n; ++jr) {
    for (int64_t ir = 0; ir * kMR < m; ++ir) {
      ks.micro(depth, packed_a + ir * depth * kMR, packed_b + jr * depth * kNR,
               c + ir * kMR * ldc + jr * kNR, ldc, accumulate);
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
  float *p, *dp, *row_lse, *row_delta, *acc_k, *acc_v, *packed_a, *packed_b;
  int64_t ld_d, ld_dv;  // row strides of acc_k (D) and acc_v (Dv), padded to kNR

  static int64_t widest(const AttentionShape& g) { return std::max({g.D, g.Dv, kBK, kBQ}); }
  static int64_t floats(const AttentionShape& g) {
    const int64_t rows = round_up(std::max(kBQ, kBK), kMR), w = round_up(widest(g), kNR);
    return 2 * rows * kBK + 2 * kBQ + 2 * rows * w + rows * w + w * w + 8 * 16;
  }
  static Scratch carve(float* base, const AttentionShape& g) {
    auto take = [&base](int64_t n) {
      float* p = base;
      base += round_up(n, 16);
      return p;
    };
    const int64_t rows = round_up(std::max(kBQ, kBK), kMR), w = round_up(widest(g), kNR);
    Scratch s;
    s.ld_d = round_up(g.D, kNR);
    s.ld_dv = round_up(g.Dv, kNR);
    s.p = take(rows * kBK);
    s.dp = take(rows * kBK);
    s.row_lse = take(kBQ);
    s.row_delta = take(kBQ);
    s.acc_k = take(rows * w);
    s.acc_v = take(rows * w);
    s.packed_a = take(rows * w);
    s.packed_b = take(w * w);
    return s;
  }
};

// For query rows [i0, i0 + bq) of head h against keys [j0, j0 + bk): the
// probabilities P into w.p and dS = P * (dO V^T - delta) into w.dp.
void block_gradients(const KernelSet& ks, const Call& c, const Scratch& w, int64_t b, int64_t h,
                     int64_t i0, int64_t bq, int64_t j0, int64_t bk) {
  const AttentionShape& g = c.shape;
  const int64_t hkv = h / g.group();
  tile_product(ks, rows_of(c.q, b, h, i0), rows_of_transposed(c.k, b, hkv, j0), bq, bk, g.D, w.p,
               kBK, false, w.packed_a, w.packed_b);
  const float to_log2 = c.scale * kLog2e;
  for (int64_t r = 0; r < bq; ++r) {
    float* s = w.p + r * kBK;
    for (int64_t j = 0; j < bk; ++j) s[j] *= to_log2;
    c.mask.apply(s, b, h, i0 + r, j0, bk);
    ks.exp2_sum(s, bk, w.row_lse[r]);
  }
  tile_product(ks, rows_of(c.dout, b, h, i0), rows_of_transposed(c.v, b, hkv, j0), bq, bk, g.Dv,
               w.dp, kBK, false, w.packed_a, w.packed_b);
  for (int64_t r = 0; r < bq; ++r) {
    for (int64_t j = 0; j < bk; ++j) {
      w.dp[r * kBK + j] = w.p[r * kBK + j] * (w.dp[r * kBK + j] - w.row_delta[r]);
    }
  }
}

// Per-row lse (in log2 units) and delta = rowsum(dO * O) of a query block.
void load_rows(const Call& c, const Scratch& w, int64_t b, int64_t h, int64_t i0, int64_t bq) {
  const TensorView &o = c.out, &d = c.dout, &l = c.lse;
  for (int64_t r = 0; r < bq; ++r) {
    const int64_t i = i0 + r;
    w.row_lse[r] = kLog2e * static_cast<const float*>(l.data)[b * l.strides[0] + h * l.strides[1] +
                                                             i * l.strides[2]];
    const int64_t orow = b * o.strides[0] + h * o.strides[1] + i * o.strides[2];
    const int64_t drow = b * d.strides[0] + h * d.strides[1] + i * d.strides[2];
    float delta = 0.0f;
    for (int64_t x = 0; x < c.shape.Dv; ++x) {
      delta += load_float(o.data, o.dtype, orow + x * o.strides[3]) *
               load_float(d.data, d.dtype, drow + x * d.strides[3]);
    }
    w.row_delta[r] = delta;
  }
}

// acc (rows x cols, row stride ld) * factor into rows [row0, row0 + rows) of t at (b, h).
void store_rows(const TensorView& t, int64_t b, int64_t h, int64_t row0, int64_t rows, int64_t cols,
                const float* acc, int64_t ld, float factor) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = b * t.strides[0] + h * t.strides[1] + (row0 + r) * t.strides[2];
    for (int64_t x = 0; x < cols; ++x) store_float(t.data, t.dtype, base + x * t.strides[3], factor * acc[r * ld + x]);
  }
}

void key_block(const KernelSet& ks, const Call& c, const Scratch& w, int64_t b, int64_t hkv, int64_t j0) {
  const AttentionShape& g = c.shape;
  const int64_t bk = std::min(kBK, g.Sk - j0);
  const int64_t rows = round_up(bk, kMR);
  std::memset(w.acc_k, 0, sizeof(float) * static_cast<size_t>(rows * w.ld_d));
  std::memset(w.acc_v, 0, sizeof(float) * static_cast<size_t>(rows * w.ld_dv));
  // Under causal, query i sees key j0 only if i + offset >= j0.
  const int64_t first_row = c.mask.causal ? std::max<int64_t>(0, j0 - g.causal_offset()) : 0;
  for (int64_t h = hkv * g.group(); h < (hkv + 1) * g.group(); ++h) {
    for (int64_t i0 = first_row / kBQ * kBQ; i0 < g.Sq; i0 += kBQ) {
      const int64_t bq = std::min(kBQ, g.Sq - i0);
      load_rows(c, w, b, h, i0, bq);
      block_gradients(ks, c, w, b, h, i0, bq, j0, bk);
      tile_product(ks, tile_transposed(w.p, kBK), rows_of(c.dout, b, h, i0), bk, g.Dv, bq, w.acc_v,
                   w.ld_dv, true, w.packed_a, w.packed_b);
      tile_product(ks, tile_transposed(w.dp, kBK), rows_of(c.q, b, h, i0), bk, g.D, bq, w.acc_k,
                   w.ld_d, true, w.packed_a, w.packed_b);
    }
  }
  store_rows(c.dk, b, hkv, j0, bk, g.D, w.acc_k, w.ld_d, c.scale);
  store_rows(c.dv, b, hkv, j0, bk, g.Dv, w.acc_v, w.ld_dv, 1.0f);
}

void query_block(const KernelSet& ks, const Call& c, const Scratch& w, int64_t b, int64_t h, int64_t i0) {
  const AttentionShape& g = c.shape;
  const int64_t bq = std::min(kBQ, g.Sq - i0);
  std::memset(w.acc_k, 0, sizeof(float) * static_cast<size_t>(round_up(bq, kMR) * w.ld_d));
  load_rows(c, w, b, h, i0, bq);
  int64_t key_end = g.Sk;
  if (c.mask.causal) key_end = std::max<int64_t>(0, std::min(g.Sk, i0 + bq + g.causal_offset()));
  for (int64_t j0 = 0; j0 < key_end; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    block_gradients(ks, c, w, b, h, i0, bq, j0, bk);
    tile_product(ks, tile(w.dp, kBK), rows_of(c.k, b, h / g.group(), j0), bq, g.D, bk, w.acc_k,
                 w.ld_d, true, w.packed_a, w.packed_b);
  }
  store_rows(c.dq, b, h, i0, bq, g.D, w.acc_k, w.ld_d, c.scale);
}

}  // namespace

Status attention_backward(const TensorView& dout, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const TensorView& lse,
                          const TensorView* mask, bool causal, double scale, const TensorView& dq,
                          const TensorView& dk, const TensorView& dv, int num_threads) {
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
    const std::vector<float*> scratch = per_thread_scratch(threads, Scratch::floats(g));
    const KernelSet& ks = active_kernels();
    parallel_run(threads, [&](int t) {
      const Scratch w = Scratch::carve(scratch[t], g);
      for (int64_t item = t; item < key_items + query_items; item += threads) {
        if (item < key_items) {
          const int64_t blocks = ceil_div(g.Sk, kBK);
          const int64_t pair = item / blocks;
          key_block(ks, c, w, pair / g.Hkv, pair % g.Hkv, (item % blocks) * kBK);
        } else {
          const int64_t blocks = ceil_div(g.Sq, kBQ), rest = item - key_items;
          const int64_t head = rest / blocks;
          query_block(ks, c, w, head / g.Hq, head % g.Hq, (rest % blocks) * kBQ);
        }
      }
    });
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("attention_backward: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
