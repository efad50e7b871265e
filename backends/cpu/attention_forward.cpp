// Flash-attention forward on the CPU (Dao et al., FlashAttention-2, 2023):
// the score matrix is never materialised; each block of kBQ query rows walks
// the keys in blocks of kBK with an online softmax.
//
// Per (batch, key/value head), K^T and V are packed once into the GEMM's B
// layout (kernels.h) and shared by every query head of the group and every
// query block, so GQA never copies K/V per query head. Per query block:
//
//   Qp  (kBQ x D)    packed A, pre-multiplied by scale * log2(e)
//   S   (kBQ x kBK)  = Qp . Kp[block]          micro-kernel, depth D
//   m, l (kBQ)       running max / sum in log2 units; P = 2^(S - m) in place
//   O   (kBQ x Dv)   = O * 2^(m_old - m_new) + P . Vp[block]   P read unpacked
//
// Working in log2 units lets the exponential be a plain exp2 (a shift plus a
// polynomial). With causal masking, key blocks past the diagonal are skipped,
// and so are the 6 x 16 products of S and P . V that the diagonal hides.
// Calls with at most 8 queries per head go to attention_decode.cpp instead.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "attention.h"
#include "attention_common.h"
#include "attention_decode.h"
#include "thread_pool.h"
#include "hetero/view_checks.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kBQ = 96;   // query rows per block, whole kMR slivers
constexpr int64_t kBK = 128;  // keys per block, whole kNR slivers
static_assert(kBQ % kMR == 0 && kBK % kNR == 0, "blocks must be whole slivers");

// Scratch of one thread; sizes depend on the call.
struct Scratch {
  float *kp, *vp, *qp, *s, *o, *m, *l;
  int64_t dv_pad;

  static int64_t floats(const AttentionShape& g) {
    const int64_t sk_pad = round_up(g.Sk, kNR), dv_pad = round_up(g.Dv, kNR);
    return sk_pad * g.D + g.Sk * dv_pad + kBQ * g.D + kBQ * kBK + kBQ * dv_pad + 2 * kBQ +
           8 * 16;  // room to align each part
  }

  static Scratch carve(float* base, const AttentionShape& g) {
    auto take = [&base](int64_t n) {
      float* p = base;
      base += round_up(n, 16);
      return p;
    };
    Scratch s;
    s.dv_pad = round_up(g.Dv, kNR);
    s.kp = take(round_up(g.Sk, kNR) * g.D);
    s.vp = take(g.Sk * s.dv_pad);
    s.qp = take(kBQ * g.D);
    s.s = take(kBQ * kBK);
    s.o = take(kBQ * s.dv_pad);
    s.m = take(kBQ);
    s.l = take(kBQ);
    return s;
  }
};

// One block of query rows [i0, i0 + bq) of head h in batch b, against the
// packed K/V of its key/value head.
void query_block(const KernelSet& ks, const ForwardCall& c, const Scratch& w, int64_t b, int64_t h,
                 int64_t i0, int64_t bq) {
  const AttentionShape& g = c.shape;
  const int64_t row_slivers = ceil_div(bq, kMR);
  ks.pack_a(rows_of(c.q, b, h, i0), bq, g.D, w.qp);
  for (int64_t x = 0; x < row_slivers * kMR * g.D; ++x) w.qp[x] *= c.q_scale;
  std::fill(w.m, w.m + kBQ, -kInf);
  std::fill(w.l, w.l + kBQ, 0.0f);
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(kBQ * w.dv_pad));

  int64_t key_end = g.Sk;
  if (c.mask.causal) key_end = std::max<int64_t>(0, std::min(g.Sk, i0 + bq + g.causal_offset()));
  for (int64_t j0 = 0; j0 < key_end; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    // Keys of this block that a sliver of rows needs: those its last row
    // sees. On the causal diagonal the rest of the tile is masked, so its
    // products in S and in P . V are skipped.
    auto sliver_keys = [&](int64_t ir) { return c.mask.visible(i0 + std::min(bq, (ir + 1) * kMR) - 1, j0, bk); };
    for (int64_t jr = 0; jr * kNR < bk; ++jr) {
      const float* k_sliver = w.kp + (j0 / kNR + jr) * g.D * kNR;
      for (int64_t ir = 0; ir < row_slivers; ++ir) {
        if (jr * kNR >= sliver_keys(ir)) continue;
        ks.micro(g.D, w.qp + ir * g.D * kMR, k_sliver, w.s + ir * kMR * kBK + jr * kNR, kBK, false);
      }
    }
    // Online softmax, row by row, over the keys the row sees; P is 0 past
    // them and goes to the packed-A layout for P . V.
    for (int64_t r = 0; r < bq; ++r) {
      float* s = w.s + r * kBK;
      const int64_t seen = c.mask.visible(i0 + r, j0, bk);
      c.mask.apply(s, b, h, i0 + r, j0, seen);
      const float rescale = online_softmax_row(ks, s, seen, &w.m[r], &w.l[r]);
      std::fill(s + seen, s + bk, 0.0f);
      if (rescale != 1.0f) {
        float* o = w.o + r * w.dv_pad;
        for (int64_t d = 0; d < g.Dv; ++d) o[d] *= rescale;
      }
    }
    for (int64_t jr = 0; jr * kNR < g.Dv; ++jr) {
      const float* v_sliver = w.vp + jr * g.Sk * kNR + j0 * kNR;
      for (int64_t ir = 0; ir < row_slivers; ++ir) {
        ks.micro_rows(sliver_keys(ir), w.s + ir * kMR * kBK, kBK, v_sliver, w.o + ir * kMR * w.dv_pad + jr * kNR,
                      w.dv_pad, true);
      }
    }
  }

  for (int64_t r = 0; r < bq; ++r) write_output_row(c, b, h, i0 + r, w.o + r * w.dv_pad, w.m[r], w.l[r]);
}

// Work items: (batch, key/value head) pairs, each split into `chunks` that
// take every chunks-th (query head, query block) unit of the pair, so that
// causal rows of different cost are spread evenly.
void run(const KernelSet& ks, const ForwardCall& c, int threads, float* const* scratch) {
  const AttentionShape& g = c.shape;
  const int64_t pairs = g.B * g.Hkv;
  const int64_t q_blocks = ceil_div(g.Sq, kBQ);
  const int64_t units = g.group() * q_blocks;
  int64_t chunks = 1;
  if (pairs % threads != 0 && pairs < 4 * threads) chunks = std::min(units, ceil_div(2 * threads, pairs));
  const int64_t items = pairs * chunks;

  parallel_run(threads, [&](int t) {
    const Scratch w = Scratch::carve(scratch[t], g);
    int64_t packed_pair = -1;
    for (int64_t item = t; item < items; item += threads) {
      const int64_t pair = item / chunks, chunk = item % chunks;
      const int64_t b = pair / g.Hkv, hkv = pair % g.Hkv;
      if (pair != packed_pair && g.Sk > 0) {
        ks.pack_b(rows_of_transposed(c.k, b, hkv, 0), g.D, g.Sk, w.kp);
        ks.pack_b(rows_of(c.v, b, hkv, 0), g.Sk, g.Dv, w.vp);
        packed_pair = pair;
      }
      for (int64_t u = chunk; u < units; u += chunks) {
        const int64_t h = hkv * g.group() + u / q_blocks;
        const int64_t i0 = (u % q_blocks) * kBQ;
        query_block(ks, c, w, b, h, i0, std::min(kBQ, g.Sq - i0));
      }
    }
  });
}

}  // namespace

Status attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView* mask, bool causal, double scale, const TensorView& out,
                         const TensorView* lse, int num_threads) {
  try {
    AttentionShape g;
    Status s = check_num_threads(num_threads);
    if (s.ok()) s = validate_attention(q, k, v, mask, out, lse, nullptr, &g);
    if (!s.ok() || g.B * g.Hq * g.Sq == 0 || g.Dv == 0) return s;
    const ForwardCall c{q, k, v, out, lse, g, ScoreMask{mask, causal, g.causal_offset()},
                 static_cast<float>(scale) * kLog2e};
    const int64_t work = g.B * g.Hq * g.Sq * std::max<int64_t>(g.Sk, 1) * (g.D + g.Dv);
    const int threads = threads_for_work(num_threads, work, int64_t{1} << 18);
    if (decode_applies(c)) {
      attention_decode(active_kernels(), c, threads);
    } else {
      run(active_kernels(), c, threads, per_thread_scratch(threads, Scratch::floats(g)).data());
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("attention: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
