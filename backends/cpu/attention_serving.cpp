// Serving attention on the CPU: packed variable-length batches
// (attention_serving.h; the paged KV cache is attention_paged.cpp).
//
// Each sequence is an ordinary attention call on 4-D views of the
// packed tensors (batch 1, strides taken from the packed rows), run by the
// flash or decode path of attention_forward.cpp with the window and softcap in
// its ScoreMask. Sequences run whole on one thread each, taken largest first
// from a common counter, so threads that finish early take the small ones;
// only a sequence holding more than its share of the batch (see
// spread_over_threads) spreads over all threads, one at a time, before them.

#include "attention_serving.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "attention_common.h"
#include "attention_serving_checks.h"
#include "thread_pool.h"

namespace hetero {
namespace cpu {
namespace {

using namespace serving;

constexpr int64_t kSmallSequenceWork = int64_t{1} << 22;  // below: always one thread per sequence

// Whether a sequence of `work` spreads over the threads rather than running on
// one: where it holds more than half a thread's share of the batch's `total`,
// a thread running it whole would still be busy when the others run dry.
// Spreading costs a parallel region and its split per sequence, which for
// many short sequences was a third of the call.
bool spread_over_threads(int64_t work, int64_t total, int threads) {
  return threads > 1 && work >= kSmallSequenceWork && work * 2 * threads > total;
}

// Sequence rows [row0, row0 + rows) of a packed (T, H, X) view as (1, H, rows, X).
TensorView sequence_view(const TensorView& t, int64_t row0, int64_t rows) {
  TensorView v;
  v.data = t.element_ptr(row0 * t.strides[0]);
  v.dtype = t.dtype;
  v.ndim = 4;
  const int64_t sizes[4] = {1, t.sizes[1], rows, t.sizes[2]};
  const int64_t strides[4] = {0, t.strides[1], t.strides[0], t.strides[2]};
  std::copy(sizes, sizes + 4, v.sizes);
  std::copy(strides, strides + 4, v.strides);
  return v;
}

// Rows [row0, row0 + rows) of an (H, T) log-sum-exp as (1, H, rows).
TensorView sequence_lse(const TensorView& lse, int64_t row0, int64_t rows) {
  TensorView v;
  v.data = lse.element_ptr(row0 * lse.strides[1]);
  v.dtype = lse.dtype;
  v.ndim = 3;
  const int64_t sizes[3] = {1, lse.sizes[0], rows};
  const int64_t strides[3] = {0, lse.strides[0], lse.strides[1]};
  std::copy(sizes, sizes + 3, v.sizes);
  std::copy(strides, strides + 3, v.strides);
  return v;
}

ScoreMask score_mask(const ServingMask& m, int64_t causal_offset) {
  return ScoreMask{nullptr, m.causal, causal_offset, m.window_left, m.window_right,
                   static_cast<float>(m.softcap) * kLog2e};
}

}  // namespace

Status varlen_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                                const TensorView& cu_q, const TensorView& cu_k,
                                const ServingMask& mask, const TensorView& out,
                                const TensorView* lse, int num_threads) {
  try {
    Status s = check_num_threads(num_threads);
    const std::pair<const TensorView*, const char*> packed[] = {{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}};
    for (const auto& [t, name] : packed) {
      if (s.ok()) s = check_ndim(*t, name, 3);
      if (s.ok()) s = check_same_float(*t, name, q.dtype);
    }
    if (!s.ok()) return s;
    const int64_t Hq = q.sizes[1], Hkv = k.sizes[1], D = q.sizes[2], Dv = v.sizes[2];
    if (Hkv == 0 || Hq % Hkv != 0) return invalid("k", "a head count dividing q's " + std::to_string(Hq), std::to_string(Hkv));
    if (k.sizes[2] != D || v.sizes[0] != k.sizes[0] || v.sizes[1] != Hkv || out.sizes[0] != q.sizes[0] ||
        out.sizes[1] != Hq || out.sizes[2] != Dv) {
      return Status::InvalidArgument("k, v, out: sizes do not match q (Tq, Hq, D), k (Tk, Hkv, D), v (Tk, Hkv, Dv)");
    }
    if (lse != nullptr) {
      if (!(s = check_ndim(*lse, "lse", 2)).ok()) return s;
      if (lse->dtype != DType::float32 || lse->sizes[0] != Hq || lse->sizes[1] != q.sizes[0]) {
        return invalid("lse", "float32 (Hq, Tq)", std::string(dtype_name(lse->dtype)) + " " + join(lse->sizes, 2));
      }
    }
    const int64_t batch = cu_q.ndim == 1 ? cu_q.sizes[0] - 1 : -1;
    if (!(s = check_cu_seqlens(cu_q, "cu_seqlens_q", batch, q.sizes[0])).ok() ||
        !(s = check_cu_seqlens(cu_k, "cu_seqlens_k", batch, k.sizes[0])).ok()) {
      return s;
    }
    if (q.sizes[0] == 0 || Dv == 0) return Status::Ok();

    // One call per sequence; small ones on one thread each, in parallel.
    auto call = [&](int64_t b, int threads) {
      const int64_t q0 = int_at(cu_q, b), sq = int_at(cu_q, b + 1) - q0;
      const int64_t k0 = int_at(cu_k, b), sk = int_at(cu_k, b + 1) - k0;
      if (sq == 0) return;
      const TensorView qv = sequence_view(q, q0, sq), kv = sequence_view(k, k0, sk);
      const TensorView vv = sequence_view(v, k0, sk), ov = sequence_view(out, q0, sq);
      TensorView lv;
      if (lse != nullptr) lv = sequence_lse(*lse, q0, sq);
      const ForwardCall c{qv, kv, vv, ov, lse ? &lv : nullptr, AttentionShape{1, Hq, Hkv, sq, sk, D, Dv},
                          score_mask(mask, sk - sq), static_cast<float>(mask.scale) * kLog2e};
      run_forward(c, threads);
    };
    auto work = [&](int64_t b) {
      return (int_at(cu_q, b + 1) - int_at(cu_q, b)) * std::max(1, int_at(cu_k, b + 1) - int_at(cu_k, b)) * Hq * (D + Dv);
    };
    int64_t batch_work = 0;
    for (int64_t b = 0; b < batch; ++b) batch_work += work(b);
    std::vector<int64_t> small, large;
    for (int64_t b = 0; b < batch; ++b) {
      (spread_over_threads(work(b), batch_work, num_threads) ? large : small).push_back(b);
    }
    for (int64_t b : large) call(b, num_threads);
    if (small.empty()) return Status::Ok();
    std::stable_sort(small.begin(), small.end(), [&](int64_t x, int64_t y) { return work(x) > work(y); });
    int64_t total = 0;
    for (int64_t b : small) total += work(b);
    const int threads = static_cast<int>(std::min<int64_t>(threads_for_work(num_threads, total, int64_t{1} << 18),
                                                           static_cast<int64_t>(small.size())));
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    parallel_run(threads, [&](int) {
      try {
        for (int64_t i = next++; i < static_cast<int64_t>(small.size()); i = next++) call(small[i], 1);
      } catch (...) {  // nothing may leave a parallel region
        failed = true;
      }
    });
    if (failed) return Status::Internal("varlen_attention: out of memory for a thread's scratch");
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("varlen_attention: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
