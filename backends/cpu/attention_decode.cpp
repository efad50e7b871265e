// Attention forward for decode-shaped calls: a few queries per head, e.g.
// one new token per sequence.
//
// The flash path (attention_forward.cpp) packs K^T and V of each (batch,
// key/value head) and then runs each head's queries in 6-row micro-kernel
// slivers: for a few queries, packing moves as many bytes as the product
// reads, and most of each sliver is padding. Here the group * Sq query rows
// of all heads sharing a key/value head are one small-M GEMM (kernels.h
// small_m_dot / small_m_axpy) against K and V read straight from their
// storage. Up to kRowsPerPart rows go together; the rows of a large GQA
// group (or of a pair when there are fewer pairs than threads) are split
// into parts, each reading K and V once:
//
//   Q  (R x D)    float32 rows of the part, times scale * log2(e)
//   per key block j0 (kBK keys):
//     S (R x bk)  = Q . K[j0:+bk]^T                    small_m_dot: K rows are contiguous in d
//     m, l, P = 2^(S - m)                              online softmax in log2 units
//     O (R x Dv)  = O * 2^(m_old - m_new) + P . V[j0:+bk]   small_m_axpy: V rows are contiguous in d

#include "attention_decode.h"

#include <algorithm>
#include <cstring>

#include "thread_pool.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kMaxSq = 8;          // queries per head served here (beyond, flash is as fast)
constexpr int64_t kRowsPerPart = 48;  // query rows multiplied together (the GEMM's small-M limit)
constexpr int64_t kBK = 512;          // keys per block: S is at most 96 KiB

// Scratch of one thread: Q (R x D), S (R x kBK), O (R x Dv), m and l (R),
// for R up to the rows of a part.
struct Scratch {
  float *q, *s, *o, *m, *l;

  static int64_t floats(const AttentionShape& g, int64_t rows) { return rows * (g.D + kBK + g.Dv + 2); }

  static Scratch carve(float* base, const AttentionShape& g, int64_t rows) {
    Scratch w;
    w.q = base;
    w.s = w.q + rows * g.D;
    w.o = w.s + rows * kBK;
    w.m = w.o + rows * g.Dv;
    w.l = w.m + rows;
    return w;
  }
};

// Query rows [r0, r1) of the heads that read key/value head hkv of batch b;
// row r is query r % Sq of head hkv * group + r / Sq.
void group_rows(const KernelSet& ks, const ForwardCall& c, const Scratch& w, int64_t b, int64_t hkv,
                int64_t r0, int64_t r1) {
  const AttentionShape& g = c.shape;
  const int64_t rows = r1 - r0;
  auto head = [&](int64_t r) { return hkv * g.group() + (r0 + r) / g.Sq; };
  auto query = [&](int64_t r) { return (r0 + r) % g.Sq; };
  for (int64_t r = 0; r < rows; ++r) {
    ks.widen_rows(rows_of(c.q, b, head(r), query(r)), 1, g.D, w.q + r * g.D, g.D);
  }
  for (int64_t x = 0; x < rows * g.D; ++x) w.q[x] *= c.q_scale;
  ks.order_dot_rows(w.q, rows, g.D, g.D, c.k.dtype);
  std::fill(w.m, w.m + rows, -kInf);
  std::fill(w.l, w.l + rows, 0.0f);
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(rows * g.Dv));

  for (int64_t j0 = 0; j0 < g.Sk; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    ks.small_m_dot(rows_of_transposed(c.k, b, hkv, j0), g.D, bk, w.q, g.D, rows, w.s, bk, false);
    for (int64_t r = 0; r < rows; ++r) {
      float* s = w.s + r * bk;
      c.mask.apply(s, b, head(r), query(r), j0, bk);
      const float rescale = online_softmax_row(ks, s, bk, &w.m[r], &w.l[r]);
      if (rescale != 1.0f) ks.scale(w.o + r * g.Dv, g.Dv, rescale);
    }
    ks.small_m_axpy(rows_of(c.v, b, hkv, j0), bk, g.Dv, w.s, bk, rows, w.o, g.Dv, true);
  }
  for (int64_t r = 0; r < rows; ++r) write_output_row(ks, c, b, head(r), query(r), w.o + r * g.Dv, w.m[r], w.l[r]);
}

}  // namespace

bool decode_applies(const ForwardCall& c) {
  const AttentionShape& g = c.shape;
  return g.Sq <= kMaxSq && g.Sk > 0 && c.k.strides[3] == 1 && c.v.strides[3] == 1;
}

void attention_decode(const KernelSet& ks, const ForwardCall& c, int threads) {
  const AttentionShape& g = c.shape;
  const int64_t pairs = g.B * g.Hkv, rows = g.group() * g.Sq;
  // Work items: (pair, part of its rows); enough parts for every thread.
  const int64_t parts = std::min(rows, std::max(ceil_div(rows, kRowsPerPart), ceil_div(threads, pairs)));
  const int64_t part_rows = ceil_div(rows, parts);
  threads = static_cast<int>(std::min<int64_t>(threads, pairs * parts));
  const std::vector<float*> scratch = per_thread_scratch(threads, Scratch::floats(g, part_rows));
  parallel_run(threads, [&](int t) {
    const Scratch w = Scratch::carve(scratch[t], g, part_rows);
    for (int64_t item = t; item < pairs * parts; item += threads) {
      const int64_t pair = item / parts, r0 = item % parts * part_rows;
      if (r0 < rows) group_rows(ks, c, w, pair / g.Hkv, pair % g.Hkv, r0, std::min(rows, r0 + part_rows));
    }
  });
}

}  // namespace cpu
}  // namespace hetero
