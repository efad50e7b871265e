// Flash-attention forward on the CPU (Dao et al., FlashAttention-2, 2023):
// the score matrix is never materialised; each block of kBQ query rows walks
// the keys in blocks of kBK with an online softmax.
//
// Per (batch, key/value head), K^T and V are packed once into a GEMM's B
// layout (kernels.h) and shared by every query head of the group and every
// query block, so GQA never copies K/V per query head. Per query block:
//
//   Qp  (kBQ x D)    packed A
//   S   (kBQ x kBK)  = Qp . Kp[block] * scale * log2(e)   micro-kernel, depth D
//   m, l (kBQ)       running max / sum in log2 units; P = 2^(S - m) in place
//   O   (kBQ x Dv)   = O * 2^(m_old - m_new) + P . Vp[block]
//
// Working in log2 units lets the exponential be a plain exp2 (a shift plus a
// polynomial). With causal masking, key blocks past the diagonal are skipped,
// and so are the tiles of S and P . V that the diagonal hides.
//
// The two products come in two forms (a Products class each, below): fp32
// (the kernel set's micro-kernel; bf16/fp16 widened while packing), and, for
// bf16 q, k, v where the kernel set has AVX512_BF16, bf16 pairs (kernels.h
// DotAttention: vdpbf16ps at twice the rate, or in the amx set AMX tiles),
// with P rounded to bf16 for P . V.
// Calls with at most 8 queries per head go to attention_decode.cpp instead.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
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

constexpr int64_t kBQ = 96;   // query rows per block: whole row slivers of both forms
constexpr int64_t kBK = 512;  // keys per block: whole key slivers of both forms; O passes
                              // through the products once per block
static_assert(kBQ % kDotAttentionMR == 0 && kBK % kDotAttentionNR == 0 && kBK % 2 == 0,
              "bf16: blocks must be whole slivers and pairs");
static_assert(kBQ % kTileAttentionMR == 0 && kBK % kTileAttentionNR == 0 && kBK % kTileAttentionK == 0,
              "AMX: blocks must be whole tiles and steps");

// ------------------------------------------------------------ the products
// Each form: its tile (mr x nr), packed depth granule (k_align) and packed
// element size; packing of Q, K^T, V and P; S tiles; O += P . V tiles.
// Packed buffers are bytes; a sliver of `width` lines and depth d starts
// width * round_up(d, k_align) * bytes after the previous one.

// fp32 (the kernel set's FloatGemm, whose tile divides kBQ x kBK): Q is
// packed pre-multiplied by scale * log2(e), so S needs no scaling; P is read
// in place (micro_rows).
class Fp32Products {
 public:
  static constexpr int64_t k_align = 1, bytes = sizeof(float);
  static constexpr bool packs_p = false;
  const int64_t mr, nr;

  explicit Fp32Products(const FloatGemm& f) : mr(f.mr), nr(f.nr), f_(f) {
    if (kBQ % mr != 0 || kBK % nr != 0) throw std::logic_error("fp32 tile does not divide the blocks");
  }

  void begin() const {}
  void pack_q(const ForwardCall& c, const MatrixRef& q, int64_t rows, char* dst) const {
    float* qp = reinterpret_cast<float*>(dst);
    f_.pack_a(q, rows, c.shape.D, qp);
    for (int64_t x = 0; x < ceil_div(rows, mr) * mr * c.shape.D; ++x) qp[x] *= c.q_scale;
  }
  float score_scale(const ForwardCall&) const { return 1.0f; }
  void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, char* dst) const {
    f_.pack_b(src, depth, cols, reinterpret_cast<float*>(dst));
  }
  void scores(int64_t depth, const char* q, const char* k, float* s, int64_t lds) const {
    f_.micro(depth, reinterpret_cast<const float*>(q), reinterpret_cast<const float*>(k), s, lds, false);
  }
  void pack_p(const float*, int64_t, int64_t, int64_t, char*) const {}
  bool packs_p_rows() const { return false; }  // so softmax_pack_row is never called
  float softmax_pack_row(const float*, int64_t, int64_t, float, float, int64_t, char*, float*) const { return 0.0f; }
  // o += P[0:mr, 0:keys] . V[0:keys, 0:nr]; p: P's rows (row stride lds).
  void accumulate_pv(int64_t keys, const float* p, int64_t lds, const char*, const char* v, float* o,
                     int64_t ldo) const {
    f_.micro_rows(keys, p, lds, reinterpret_cast<const float*>(v), o, ldo, true);
  }

 private:
  const FloatGemm& f_;
};

// bf16 pairs (kernels.h DotAttention): S is scaled after the product (scaling
// bf16 Q would round it again); P is rounded to bf16 and packed per row
// sliver, or, where the products offer softmax_pack_row (AMX), row by row in
// the softmax's pass over the scores, which then also applies the scale. Two
// tilings take this form: vdpbf16ps pairs (mr x nr, depth in
// pairs) and AMX tiles (32 x 32, depth in steps of 32). The keys of P . V
// past those a row sliver sees are padded to a whole depth step (an odd last
// key to a pair) with keys no row of the sliver sees (P = 0 there); their V
// is zeroed in a copy of that step so that an inf or NaN in it cannot leak in
// as 0 * inf.
template <int64_t kRows, int64_t kCols, int64_t kAlign>
class PairProducts {
 public:
  static constexpr int64_t mr = kRows, nr = kCols, k_align = kAlign, bytes = sizeof(uint16_t);
  static constexpr bool packs_p = true;

  explicit PairProducts(const DotAttention& dot) : dot_(dot) {}

  void begin() const {
    if (dot_.begin != nullptr) dot_.begin();
  }
  void pack_q(const ForwardCall& c, const MatrixRef& q, int64_t rows, char* dst) const {
    dot_.pack_a(q, rows, c.shape.D, reinterpret_cast<uint16_t*>(dst));
  }
  float score_scale(const ForwardCall& c) const { return c.q_scale; }
  void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, char* dst) const {
    dot_.pack_b(src, depth, cols, reinterpret_cast<uint16_t*>(dst));
  }
  void scores(int64_t depth, const char* q, const char* k, float* s, int64_t lds) const {
    dot_.micro(round_up(depth, k_align), reinterpret_cast<const uint16_t*>(q),
               reinterpret_cast<const uint16_t*>(k), s, lds, false);
  }
  void pack_p(const float* p, int64_t lds, int64_t rows, int64_t keys, char* dst) const {
    dot_.pack_a_f32(p, lds, rows, keys, reinterpret_cast<uint16_t*>(dst));
  }
  // Whether P's rows come from softmax_pack_row, straight from the scores.
  bool packs_p_rows() const { return dot_.softmax_pack_row != nullptr; }
  float softmax_pack_row(const float* s, int64_t n, int64_t keys, float a, float shift, int64_t r,
                         char* sliver, float* s_max) const {
    return dot_.softmax_pack_row(s, n, round_up(keys, k_align), a, shift, r, reinterpret_cast<uint16_t*>(sliver),
                                 s_max);
  }
  // o += P[0:mr, 0:keys] . V[0:keys, 0:nr] from packed P and V.
  void accumulate_pv(int64_t keys, const float*, int64_t, const char* p, const char* v, float* o,
                     int64_t ldo) const {
    const uint16_t* pp = reinterpret_cast<const uint16_t*>(p);
    const uint16_t* vp = reinterpret_cast<const uint16_t*>(v);
    const int64_t whole = keys / k_align * k_align;
    if (whole > 0) dot_.micro(whole, pp, vp, o, ldo, true);
    if (keys == whole) return;
    // The last step's V: k_align / 2 rows of nr (key pair) words, zero past keys.
    alignas(64) uint32_t last[k_align / 2 * nr];
    std::memcpy(last, vp + whole * nr, sizeof(last));
    for (int64_t pair = 0; pair < k_align / 2; ++pair) {
      const int64_t key = whole + 2 * pair;
      const uint32_t keep = key + 1 < keys ? ~0u : key < keys ? 0xffffu : 0u;
      for (int64_t j = 0; j < nr; ++j) last[pair * nr + j] &= keep;
    }
    dot_.micro(k_align, pp + whole * mr, reinterpret_cast<const uint16_t*>(last), o, ldo, true);
  }

 private:
  const DotAttention& dot_;
};
using Bf16Products = PairProducts<kDotAttentionMR, kDotAttentionNR, 2>;
using TileProducts = PairProducts<kTileAttentionMR, kTileAttentionNR, kTileAttentionK>;

// ------------------------------------------------------------------ driver

// Scratch of one thread; sizes depend on the call and the products' form.
template <class Products>
struct Scratch {
  char *kp, *vp, *qp, *pp;
  float *s, *o, *m, *l;
  int64_t dv_pad;

  static constexpr int64_t A = Products::k_align, E = Products::bytes;
  // Bytes of each part, in the order carve lays them out.
  static std::vector<int64_t> part_bytes(const Products& pr, const AttentionShape& g) {
    const int64_t P = pr.nr, dp = round_up(g.D, A), skp = round_up(g.Sk, A), dv_pad = round_up(g.Dv, P);
    return {round_up(g.Sk, P) * dp * E, dv_pad * skp * E, kBQ * dp * E,
            Products::packs_p ? kBQ * kBK * E : 0,
            kBQ * kBK * 4, kBQ * dv_pad * 4, kBQ * 4, kBQ * 4};
  }
  static int64_t floats(const Products& pr, const AttentionShape& g) {
    int64_t total = 0;
    for (int64_t b : part_bytes(pr, g)) total += round_up(b, 64);
    return total / 4;
  }
  static Scratch carve(float* base, const Products& pr, const AttentionShape& g) {
    char* next = reinterpret_cast<char*>(base);
    std::vector<char*> parts;
    for (int64_t b : part_bytes(pr, g)) {
      parts.push_back(next);
      next += round_up(b, 64);
    }
    Scratch s;
    s.kp = parts[0], s.vp = parts[1], s.qp = parts[2], s.pp = parts[3];
    s.s = reinterpret_cast<float*>(parts[4]), s.o = reinterpret_cast<float*>(parts[5]);
    s.m = reinterpret_cast<float*>(parts[6]), s.l = reinterpret_cast<float*>(parts[7]);
    s.dv_pad = round_up(g.Dv, pr.nr);
    return s;
  }
};

// How far (log2 units) a block's max may pass the row's running max before
// the running max moves: P then stays below 2^kLazyShift (FlashAttention-4's
// lazy rescaling), and O is rescaled only when the max grows by more.
constexpr float kLazyShift = 8.0f;

// online_softmax_row (attention_common.h) for products that pack P's rows
// from the scores: s[0:n] are scores in log2 units divided by a (a > 0, so
// the block's max is a times the max of s exactly: rounding keeps order).
// Once the row has a finite running max m, P is taken against m in the same
// pass that finds the block's max, and taken again against the new max only
// where that passes m by more than kLazyShift: one pass over the scores
// instead of two.
template <class Products>
float packed_softmax_row(const KernelSet& ks, const Products& pr, const float* s, int64_t n, float a,
                         float* m, float* l, int64_t keys, int64_t row, char* sliver) {
  float s_max;
  if (std::isfinite(*m)) {
    const float sum = pr.softmax_pack_row(s, n, keys, a, *m, row, sliver, &s_max);
    if (!(s_max * a > *m + kLazyShift)) {  // a NaN score makes sum NaN, and so the row
      *l += sum;
      return 1.0f;
    }
  }
  const float m_new = running_max(*m, ks.row_max(s, n) * a);
  if (m_new == -kInf) {
    pr.softmax_pack_row(s, 0, keys, 1.0f, 0.0f, row, sliver, &s_max);
    return 1.0f;
  }
  const float rescale = rescale_factor(*m, m_new);
  *l = *l * rescale + pr.softmax_pack_row(s, n, keys, a, m_new, row, sliver, &s_max);
  *m = m_new;
  return rescale;
}

// One block of query rows [i0, i0 + bq) of head h in batch b, against the
// packed K/V of its key/value head.
template <class Products>
void query_block(const KernelSet& ks, const Products& pr, const ForwardCall& c,
                 const Scratch<Products>& w, int64_t b, int64_t h, int64_t i0, int64_t bq) {
  const int64_t mr = pr.mr, nr = pr.nr, E = Products::bytes;
  const AttentionShape& g = c.shape;
  const int64_t dp = round_up(g.D, Products::k_align), skp = round_up(g.Sk, Products::k_align);
  const int64_t row_slivers = ceil_div(bq, mr);
  const float score_scale = pr.score_scale(c);
  // Where P's rows are packed from the scores in one pass, the score scale
  // (when nothing else needs scaled scores first) is applied there too.
  const bool scale_in_exp = pr.packs_p_rows() && c.mask.mask == nullptr && c.mask.softcap == 0.0f &&
                            score_scale > 0.0f;
  pr.pack_q(c, rows_of(c.q, b, h, i0), bq, w.qp);
  std::fill(w.m, w.m + kBQ, -kInf);
  std::fill(w.l, w.l + kBQ, 0.0f);
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(kBQ * w.dv_pad));

  int64_t key_end = g.Sk;
  if (c.mask.bounded_right()) {
    key_end = std::max<int64_t>(0, std::min(g.Sk, i0 + bq + g.causal_offset() + c.mask.right_bound()));
  }
  for (int64_t j0 = 0; j0 < key_end; j0 += kBK) {
    const int64_t bk = std::min(kBK, g.Sk - j0);
    // Keys of this block that a sliver of rows needs: those its last row
    // sees. On the causal diagonal the rest of the tile is masked, so its
    // products in S and in P . V are skipped.
    auto sliver_keys = [&](int64_t ir) { return c.mask.visible(i0 + std::min(bq, (ir + 1) * mr) - 1, j0, bk); };
    for (int64_t jr = 0; jr * nr < bk; ++jr) {
      const char* k_sliver = w.kp + (j0 / nr + jr) * dp * nr * E;
      for (int64_t ir = 0; ir < row_slivers; ++ir) {
        if (jr * nr >= sliver_keys(ir)) continue;
        pr.scores(g.D, w.qp + ir * dp * mr * E, k_sliver, w.s + ir * mr * kBK + jr * nr, kBK);
      }
    }
    // Online softmax, row by row, over the keys the row sees; P is 0 past them.
    for (int64_t r = 0; r < bq; ++r) {
      float* s = w.s + r * kBK;
      const int64_t seen = c.mask.visible(i0 + r, j0, bk);
      if (score_scale != 1.0f && !scale_in_exp) ks.scale(s, seen, score_scale);
      c.mask.apply(s, b, h, i0 + r, j0, seen);
      float rescale;
      if (pr.packs_p_rows()) {
        const int64_t ir = r / mr;
        rescale = packed_softmax_row(ks, pr, s, seen, scale_in_exp ? score_scale : 1.0f, &w.m[r], &w.l[r],
                                     sliver_keys(ir), r % mr, w.pp + ir * mr * kBK * E);
      } else {
        rescale = online_softmax_row(ks, s, seen, &w.m[r], &w.l[r]);
        std::fill(s + seen, s + bk, 0.0f);
      }
      if (rescale != 1.0f) ks.scale(w.o + r * w.dv_pad, g.Dv, rescale);
    }
    if (pr.packs_p_rows()) {  // rows of the last sliver past bq: P = 0
      for (int64_t r = bq; r < row_slivers * mr; ++r) {
        const int64_t ir = r / mr;
        float unused;
        pr.softmax_pack_row(w.s, 0, sliver_keys(ir), 1.0f, 0.0f, r % mr, w.pp + ir * mr * kBK * E, &unused);
      }
    } else {
      for (int64_t ir = 0; ir < row_slivers; ++ir) {
        pr.pack_p(w.s + ir * mr * kBK, kBK, std::min(mr, bq - ir * mr), sliver_keys(ir),
                  w.pp + ir * mr * kBK * E);
      }
    }
    for (int64_t jr = 0; jr * nr < g.Dv; ++jr) {
      const char* v_sliver = w.vp + (jr * skp + j0) * nr * E;
      for (int64_t ir = 0; ir < row_slivers; ++ir) {
        pr.accumulate_pv(sliver_keys(ir), w.s + ir * mr * kBK, kBK, w.pp + ir * mr * kBK * E, v_sliver,
                         w.o + ir * mr * w.dv_pad + jr * nr, w.dv_pad);
      }
    }
  }

  for (int64_t r = 0; r < bq; ++r) write_output_row(ks, c, b, h, i0 + r, w.o + r * w.dv_pad, w.m[r], w.l[r]);
}

// Work items: (batch, key/value head) pairs, each split into `chunks` that
// take every chunks-th (query head, query block) unit of the pair, so that
// causal rows of different cost are spread evenly.
template <class Products>
void run(const KernelSet& ks, const Products& pr, const ForwardCall& c, int threads) {
  const AttentionShape& g = c.shape;
  const int64_t pairs = g.B * g.Hkv;
  const int64_t q_blocks = ceil_div(g.Sq, kBQ);
  const int64_t units = g.group() * q_blocks;
  int64_t chunks = 1;
  if (pairs % threads != 0 && pairs < 4 * threads) chunks = std::min(units, ceil_div(2 * threads, pairs));
  const int64_t items = pairs * chunks;
  const std::vector<float*> scratch = per_thread_scratch(threads, Scratch<Products>::floats(pr, g));

  parallel_run(threads, [&](int t) {
    pr.begin();
    const Scratch<Products> w = Scratch<Products>::carve(scratch[t], pr, g);
    int64_t packed_pair = -1;
    for (int64_t item = t; item < items; item += threads) {
      const int64_t pair = item / chunks, chunk = item % chunks;
      const int64_t b = pair / g.Hkv, hkv = pair % g.Hkv;
      if (pair != packed_pair && g.Sk > 0) {
        pr.pack_b(rows_of_transposed(c.k, b, hkv, 0), g.D, g.Sk, w.kp);
        pr.pack_b(rows_of(c.v, b, hkv, 0), g.Sk, g.Dv, w.vp);
        packed_pair = pair;
      }
      for (int64_t u = chunk; u < units; u += chunks) {
        const int64_t h = hkv * g.group() + u / q_blocks;
        const int64_t i0 = (u % q_blocks) * kBQ;
        query_block(ks, pr, c, w, b, h, i0, std::min(kBQ, g.Sq - i0));
      }
    }
  });
}

}  // namespace

void run_forward(const ForwardCall& c, int num_threads) {
  const AttentionShape& g = c.shape;
  const int64_t work = g.B * g.Hq * g.Sq * std::max<int64_t>(g.Sk, 1) * (g.D + g.Dv);
  const int threads = threads_for_work(num_threads, work, int64_t{1} << 18);
  const KernelSet& ks = active_kernels();
  const bool bf16 = c.q.dtype == DType::bfloat16 && c.k.dtype == DType::bfloat16 &&
                    c.v.dtype == DType::bfloat16 && ks.bf16_attention != nullptr;
  if (decode_applies(c)) {
    attention_decode(ks, c, threads);
  } else if (bf16 && ks.tile_attention != nullptr) {
    run(ks, TileProducts(*ks.tile_attention), c, threads);
  } else if (bf16) {
    run(ks, Bf16Products(*ks.bf16_attention), c, threads);
  } else {
    run(ks, Fp32Products(*ks.fp32_gemm), c, threads);
  }
}

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
    run_forward(c, num_threads);
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("attention: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
