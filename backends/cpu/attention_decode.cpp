// Attention forward for decode-shaped calls: few query rows per key/value
// head, e.g. one new token per sequence, or a few with GQA.
//
// The flash path (attention_forward.cpp) packs K^T and V of each (batch,
// key/value head) and then runs 6-row micro-kernel slivers: for a handful of
// rows, packing moves as many bytes as the product reads, and most of each
// sliver is padding. Here the R = group * Sq rows of the whole GQA group are
// one small-M GEMM (kernels.h small_m_dot / small_m_axpy) against K and V
// read straight from their storage, once:
//
//   Q  (R x D)    float32 rows of the group's heads, times scale * log2(e)
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

constexpr int64_t kMaxRows = 16;  // group * Sq served here
constexpr int64_t kBK = 512;      // keys per block: S is at most 32 KiB

// Scratch of one thread: Q (R x D), S (R x kBK), O (R x Dv), m and l (R).
struct Scratch {
  float *q, *s, *o, *m, *l;

  static int64_t floats(const AttentionShape& g) {
    const int64_t rows = g.group() * g.Sq;
    return rows * (g.D + kBK + g.Dv + 2);
  }

  static Scratch carve(float* base, const AttentionShape& g) {
    const int64_t rows = g.group() * g.Sq;
    Scratch w;
    w.q = base;
    w.s = w.q + rows * g.D;
    w.o = w.s + rows * kBK;
    w.m = w.o + rows * g.Dv;
    w.l = w.m + rows;
    return w;
  }
};

// Every query row of the heads that read key/value head hkv of batch b.
void group_rows(const KernelSet& ks, const ForwardCall& c, const Scratch& w, int64_t b, int64_t hkv) {
  const AttentionShape& g = c.shape;
  const int64_t rows = g.group() * g.Sq;  // row r: head hkv * group + r / Sq, query r % Sq
  for (int64_t gi = 0; gi < g.group(); ++gi) {
    ks.widen_rows(rows_of(c.q, b, hkv * g.group() + gi, 0), g.Sq, g.D, w.q + gi * g.Sq * g.D, g.D);
  }
  for (int64_t x = 0; x < rows * g.D; ++x) w.q[x] *= c.q_scale;
  std::fill(w.m, w.m + rows, -kInf);
  std::fill(w.l, w.l + rows, 0.0f);
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(rows * g.Dv));

  for (int64_t j0 = 0; j0 < g.Sk; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    ks.small_m_dot(rows_of_transposed(c.k, b, hkv, j0), g.D, bk, w.q, g.D, rows, w.s, bk, false);
    for (int64_t r = 0; r < rows; ++r) {
      float* s = w.s + r * bk;
      c.mask.apply(s, b, hkv * g.group() + r / g.Sq, r % g.Sq, j0, bk);
      const float rescale = online_softmax_row(ks, s, bk, &w.m[r], &w.l[r]);
      if (rescale != 1.0f) {
        float* o = w.o + r * g.Dv;
        for (int64_t d = 0; d < g.Dv; ++d) o[d] *= rescale;
      }
    }
    ks.small_m_axpy(rows_of(c.v, b, hkv, j0), bk, g.Dv, w.s, bk, rows, w.o, g.Dv, true);
  }
  for (int64_t r = 0; r < rows; ++r) {
    write_output_row(c, b, hkv * g.group() + r / g.Sq, r % g.Sq, w.o + r * g.Dv, w.m[r], w.l[r]);
  }
}

}  // namespace

bool decode_applies(const ForwardCall& c) {
  const AttentionShape& g = c.shape;
  return g.group() * g.Sq <= kMaxRows && g.Sk > 0 && c.k.strides[3] == 1 && c.v.strides[3] == 1;
}

void attention_decode(const KernelSet& ks, const ForwardCall& c, int threads) {
  const AttentionShape& g = c.shape;
  const int64_t pairs = g.B * g.Hkv;
  threads = static_cast<int>(std::min<int64_t>(threads, pairs));
  const std::vector<float*> scratch = per_thread_scratch(threads, Scratch::floats(g));
  parallel_run(threads, [&](int t) {
    const Scratch w = Scratch::carve(scratch[t], g);
    for (int64_t pair = t; pair < pairs; pair += threads) group_rows(ks, c, w, pair / g.Hkv, pair % g.Hkv);
  });
}

}  // namespace cpu
}  // namespace hetero
