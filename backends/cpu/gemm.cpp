// out = alpha * (a @ b) + beta * bias on the CPU: the BLIS loop nest around
// the packed micro-kernel of kernels.h.
//
// For each batch element, with blocks NC (columns), MC (rows), KC (depth):
//
//   for jc in N step NC:                 Bp = pack(b[:, jc:jc+NC])      K x NC, shared
//     for ic in M step MC:
//       for pc in K step KC:             Ap = pack(a[ic:+MC, pc:+KC])   MC x KC, L2
//         for jr in NC step NR:          one Bp sliver, KC x NR, L1
//           for ir in MC step MR:        C[ir, jr] += Ap sliver . Bp sliver
//       out[ic:+MC, jc:+NC] = alpha * C + beta * bias   (C: fp32 workspace)
//
// Accumulating into a float32 workspace tile and writing out only once keeps
// bf16/fp16 outputs rounded exactly once and lets any output stride, bias
// dtype and alpha/beta share one epilogue; it costs one extra pass over
// MC x NC floats per block, which is 1/K of the arithmetic.
//
// Two micro-kernels plug into this nest (a Tiling: tile, blocks, packers):
// the kernel set's fp32 one (kernels.h FloatGemm), which every dtype can take
// (bf16/fp16 widened while packing), and, where the kernel set has one, the
// bf16 GEMM of kernels.h DotGemm (vdpbf16ps pairs, or AMX tiles) for bf16
// inputs, which multiplies them unwidened.
//
// Threads form a tm x tn grid over (rows, columns) of each batch element. A
// thread alone on its columns packs Bp a sliver's KC block at a time, just
// before the first row block uses it (so it is used from cache); the tm
// threads sharing a column range pack the whole panel together and meet at a
// barrier. Many small batch elements are instead dealt out whole, one thread
// each. Decode-shaped calls (a few rows of a) take gemm_small_m.cpp instead,
// or, bf16 (and byte-coded) x @ w.t() within the rows of the kernel set's
// WeightStream, gemm_weight_stream.cpp.

#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "gemm_problem.h"
#include "gemm_small_m.h"
#include "gemm_weight_stream.h"
#include "kernels.h"
#include "thread_pool.h"
#include "hetero/gemm_args.h"
#include "hetero/view_checks.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

// The micro-kernel of one call, its blocks and packers: the kernel set's fp32
// one, or a DotGemm. Packed elements are counted in bytes.
struct Tiling {
  int64_t mr, nr, mc, kc, nc;
  int64_t k_align;  // packed depth is a multiple of this (DotGemm::k_align)
  int64_t bytes;    // of one packed element
  const FloatGemm* fp32;
  const DotGemm* dot;
  const uint16_t* table = nullptr;  // byte-coded operands: their bf16 codes (dot only)

  static Tiling of(const FloatGemm& f) { return {f.mr, f.nr, f.mc, f.kc, f.nc, 1, 4, &f, nullptr}; }
  static Tiling of(const DotGemm& d) { return {d.mr, d.nr, d.mc, d.kc, d.nc, d.k_align, 2, nullptr, &d}; }

  // scratch: room for the decoded block (byte-coded operands only).
  void pack_a(const MatrixRef& a, int64_t rows, int64_t depth, char* dst, uint16_t* scratch) const {
    if (table) {
      return dot->pack_a(decoded(a, rows, depth, scratch), rows, depth, reinterpret_cast<uint16_t*>(dst));
    }
    if (dot) return dot->pack_a(a, rows, depth, reinterpret_cast<uint16_t*>(dst));
    fp32->pack_a(a, rows, depth, reinterpret_cast<float*>(dst));
  }
  void pack_b(const MatrixRef& b, int64_t depth, int64_t cols, char* dst, uint16_t* scratch) const {
    if (table) {
      return dot->pack_b(decoded(b, depth, cols, scratch), depth, cols, reinterpret_cast<uint16_t*>(dst));
    }
    if (dot) return dot->pack_b(b, depth, cols, reinterpret_cast<uint16_t*>(dst));
    fp32->pack_b(b, depth, cols, reinterpret_cast<float*>(dst));
  }

  // src[0:rows, 0:cols] of byte codes as bf16 in out (rows * cols values),
  // keeping the orientation in which src's lines are contiguous (vector decode)
  // — the packers take any strides. Decoding the panel being packed, instead of
  // whole operands beforehand, saves a pass over memory.
  MatrixRef decoded(const MatrixRef& src, int64_t rows, int64_t cols, uint16_t* out) const {
    const auto* bytes = static_cast<const uint8_t*>(src.data);
    const QuantizedKernels& q = *active_kernels().quantized;
    if (src.row_stride == 1 && src.col_stride != 1) {  // columns contiguous
      q.decode_rows(bytes, src.col_stride, cols, rows, table, out, rows);
      return {out, DType::bfloat16, 1, rows};
    }
    if (src.col_stride == 1) {
      q.decode_rows(bytes, src.row_stride, rows, cols, table, out, cols);
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          out[i * cols + j] = table[bytes[i * src.row_stride + j * src.col_stride]];
        }
      }
    }
    return {out, DType::bfloat16, cols, 1};
  }
  void micro(int64_t depth, const char* a, const char* b, float* c, int64_t ldc, bool acc) const {
    if (dot) {
      return dot->micro(depth, reinterpret_cast<const uint16_t*>(a),
                        reinterpret_cast<const uint16_t*>(b), c, ldc, acc);
    }
    fp32->micro(depth, reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b), c,
                ldc, acc);
  }
};

// Multiply-adds a thread must get to be worth waking.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 18;
// Batch elements at most this large are dealt out whole to threads.
constexpr int64_t kSmallMacs = int64_t{1} << 21;

// ------------------------------------------------------------------ driver

struct Plan {
  int threads = 1;
  int tm = 1, tn = 1;           // thread grid over one batch element
  bool whole_batches = false;   // each thread takes whole batch elements instead
};

// The grid whose busiest thread has the fewest padded tiles; ties go to more
// column groups: a thread alone on its columns packs its Bp as it uses it
// (in cache, with no barrier), and the packing work is split either way.
Plan make_plan(const Problem& p, const Tiling& t, int requested) {
  Plan plan;
  const int64_t macs = p.M * p.N * std::max<int64_t>(p.K, 1) * p.batches;
  plan.threads = threads_for_work(requested, macs, kMinMacsPerThread);
  if (plan.threads > 1 && p.batches >= plan.threads && p.M * p.N * p.K <= kSmallMacs) {
    plan.whole_batches = true;
    return plan;
  }
  const int64_t m_slivers = ceil_div(p.M, t.mr), n_slivers = ceil_div(p.N, t.nr);
  int64_t best = -1;
  for (int tm = 1; tm <= plan.threads; ++tm) {
    if (plan.threads % tm != 0) continue;
    const int tn = plan.threads / tm;
    const int64_t cost = ceil_div(m_slivers, tm) * ceil_div(n_slivers, tn);
    if (best < 0 || cost < best) {
      best = cost;
      plan.tm = tm;
      plan.tn = tn;
    }
  }
  return plan;
}

// Scratch of one thread (Ap, C: mc x nc floats, row stride nc) and of one
// thread group (Bp).
struct Buffers {
  char* packed_a;
  float* acc;
  char* packed_b;
  uint16_t* decoded;  // byte-coded operands: the block being packed, as bf16
};

inline void prefetch_line(const char* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

// b[0:depth, 0:cols], prefetched a part at a time: its contiguous runs (rows
// where the column stride is 1, columns where the row stride is), line by line.
struct NextPanel {
  MatrixRef b;
  int64_t depth, cols;

  void step(int64_t part, int64_t parts) const {
    const bool by_rows = b.col_stride == 1;
    if (cols == 0 || depth == 0 || (!by_rows && b.row_stride != 1)) return;
    const int64_t runs = by_rows ? depth : cols, size = element_size(b.dtype);
    const int64_t run_bytes = (by_rows ? cols : depth) * size;
    const int64_t run_stride = (by_rows ? b.row_stride : b.col_stride) * size;
    for (int64_t r = runs * part / parts; r < runs * (part + 1) / parts; ++r) {
      const char* run = static_cast<const char*>(b.data) + r * run_stride;
      for (int64_t x = 0; x < run_bytes; x += 64) prefetch_line(run + x);
    }
  }
};

// Rows [m0, m1) x columns [n0, n1) of one batch element, by one member of a
// group of `members` threads that share columns, Bp and `barrier` (null for
// a thread alone).
void compute_block(const Tiling& t, const Problem& p, const Gemm2d& g, int64_t m0, int64_t m1,
                   int64_t n0, int64_t n1, int member, int members, Barrier* barrier,
                   const Buffers& buf) {
  const int64_t K = p.K, Kp = round_up(K, t.k_align), ldc = t.nc;
  if (t.dot != nullptr && t.dot->begin != nullptr) t.dot->begin();
  for (int64_t jc = n0; jc < n1; jc += t.nc) {
    const int64_t nc = std::min(t.nc, n1 - jc);
    const int64_t slivers = ceil_div(nc, t.nr);
    // A thread alone on its columns packs each Bp sliver's depth block just
    // before the first row block uses it, while it is in cache; a group packs
    // the whole panel together first. So does a thread alone where the pair
    // packers (bf16) interleave rows of b that are contiguous (x @ w): a
    // sliver at a time they would read 64 bytes of each row, a stride the
    // prefetchers follow poorly, where the whole panel reads the rows in
    // order (on AMX, a bf16 x @ w of 128-512 rows ran 10-20% faster so).
    const bool rows_in_order = t.dot != nullptr && g.b.col_stride == 1 && g.b.row_stride != 1;
    const bool pack_as_used = members == 1 && !rows_in_order;
    if (K > 0 && !pack_as_used) {
      if (members > 1) barrier->wait();  // everyone is done with the previous Bp
      int64_t s0, s1;
      split_range(slivers, members, member, &s0, &s1);
      if (s1 > s0) {
        const MatrixRef b{g.b.at(0, jc + s0 * t.nr), g.b.dtype, g.b.row_stride, g.b.col_stride};
        t.pack_b(b, K, std::min(nc - s0 * t.nr, (s1 - s0) * t.nr),
                 buf.packed_b + s0 * Kp * t.nr * t.bytes, buf.decoded);
      }
      if (members > 1) barrier->wait();  // Bp complete
    }
    // While the first row block computes, the next panel's columns of b (this
    // member's share of its packing) are fetched from memory, a part per sliver
    // step: packing it then reads cache instead of waiting on DRAM.
    const int64_t next_jc = jc + t.nc, next_nc = std::max<int64_t>(0, std::min(t.nc, n1 - next_jc));
    int64_t s0 = 0, s1 = 0;
    split_range(ceil_div(next_nc, t.nr), members, member, &s0, &s1);
    const bool fetch = s1 > s0;
    const NextPanel next_b{{fetch ? g.b.at(0, next_jc + s0 * t.nr) : g.b.data, g.b.dtype,
                            g.b.row_stride, g.b.col_stride},
                           K, fetch ? std::min(next_nc - s0 * t.nr, (s1 - s0) * t.nr) : 0};
    for (int64_t ic = m0; ic < m1; ic += t.mc) {
      const int64_t mc = std::min(t.mc, m1 - ic);
      const int64_t row_slivers = ceil_div(mc, t.mr);
      if (K == 0) {
        std::memset(buf.acc, 0, sizeof(float) * static_cast<size_t>(row_slivers * t.mr * ldc));
      }
      for (int64_t pc = 0; pc < K; pc += t.kc) {  // pc stays a multiple of k_align
        const int64_t kc = std::min(t.kc, K - pc), kcp = round_up(kc, t.k_align);
        const MatrixRef a{g.a.at(ic, pc), g.a.dtype, g.a.row_stride, g.a.col_stride};
        t.pack_a(a, mc, kc, buf.packed_a, buf.decoded);
        for (int64_t jr = 0; jr < slivers; ++jr) {
          char* b_sliver = buf.packed_b + (jr * Kp + pc) * t.nr * t.bytes;
          if (ic == m0 && pack_as_used) {
            const int64_t col = jc + jr * t.nr;
            const MatrixRef b{g.b.at(pc, col), g.b.dtype, g.b.row_stride, g.b.col_stride};
            t.pack_b(b, kc, std::min(t.nr, jc + nc - col), b_sliver, buf.decoded);
          }
          if (ic == m0) next_b.step((pc / t.kc) * slivers + jr, ceil_div(K, t.kc) * slivers);
          for (int64_t ir = 0; ir < row_slivers; ++ir) {
            t.micro(kcp, buf.packed_a + ir * kcp * t.mr * t.bytes, b_sliver,
                    buf.acc + ir * t.mr * ldc + jr * t.nr, ldc, pc > 0);
          }
        }
      }
      store(buf.acc, ldc, g, ic, jc, mc, nc, p.alpha, p.beta);
    }
  }
}

// bf16 inputs go to the kernel set's pair-dot GEMM where it has one.
Tiling tiling_for(const Problem& p, const KernelSet& ks) {
  const bool bf16 = p.a->dtype == DType::bfloat16 && p.b->dtype == DType::bfloat16;
  return bf16 && ks.bf16_gemm != nullptr ? Tiling::of(*ks.bf16_gemm) : Tiling::of(*ks.fp32_gemm);
}

Status run(const Problem& p, int requested_threads, const uint16_t* table = nullptr) {
  Tiling t = tiling_for(p, active_kernels());
  if (table != nullptr) {  // byte-coded operands: decoded while packing, bf16 pairs
    t = Tiling::of(*active_kernels().bf16_gemm);
    t.table = table;
  }
  const Plan plan = make_plan(p, t, requested_threads);
  const int groups = plan.whole_batches ? plan.threads : plan.tn;
  const int64_t floats_a = ceil_div(t.mc * t.kc * t.bytes, sizeof(float));
  const int64_t floats_b = ceil_div(std::max<int64_t>(round_up(p.K, t.k_align), 1) * t.nc * t.bytes,
                                    sizeof(float));

  // Reserve everything before the threads start: only this can throw.
  thread_local std::vector<Workspace> per_thread, per_group, per_decode;
  std::vector<Buffers> buffers(static_cast<size_t>(plan.threads));
  try {
    if (per_thread.size() < static_cast<size_t>(plan.threads)) per_thread.resize(plan.threads);
    if (per_group.size() < static_cast<size_t>(groups)) per_group.resize(groups);
    if (per_decode.size() < static_cast<size_t>(plan.threads)) per_decode.resize(plan.threads);
    for (int i = 0; i < plan.threads; ++i) {
      const int group = plan.whole_batches ? i : i / plan.tm;
      float* scratch = per_thread[i].reserve(round_up(floats_a, 16) + t.mc * t.nc);
      buffers[i] = {reinterpret_cast<char*>(scratch), scratch + round_up(floats_a, 16),
                    reinterpret_cast<char*>(per_group[group].reserve(floats_b)), nullptr};
      if (t.table != nullptr) {  // B's share of a panel (K x nc) or an A block (mc x kc)
        const int64_t values = std::max(std::max<int64_t>(p.K, 1) * t.nc, t.mc * t.kc);
        buffers[i].decoded = reinterpret_cast<uint16_t*>(per_decode[i].reserve(ceil_div(values, 2)));
      }
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: cannot allocate workspace: ") + e.what());
  }

  std::vector<std::unique_ptr<Barrier>> barriers;
  for (int gi = 0; gi < groups; ++gi) barriers.emplace_back(new Barrier(plan.tm));

  parallel_run(plan.threads, [&](int i) {
    if (plan.whole_batches) {
      for (int64_t bi = i; bi < p.batches; bi += plan.threads) {
        compute_block(t, p, p.element(bi), 0, p.M, 0, p.N, 0, 1, nullptr, buffers[i]);
      }
      return;
    }
    const int group = i / plan.tm, member = i % plan.tm;
    int64_t m0, m1, n0, n1;
    split_range(ceil_div(p.M, t.mr), plan.tm, member, &m0, &m1);
    split_range(ceil_div(p.N, t.nr), plan.tn, group, &n0, &n1);
    m0 = std::min(m0 * t.mr, p.M), m1 = std::min(m1 * t.mr, p.M);
    n0 = std::min(n0 * t.nr, p.N), n1 = std::min(n1 * t.nr, p.N);
    for (int64_t bi = 0; bi < p.batches; ++bi) {
      compute_block(t, p, p.element(bi), m0, m1, n0, n1, member, plan.tm,
                    barriers[group].get(), buffers[i]);
    }
  });
  return Status::Ok();
}

Status gemm_impl(const TensorView& a, const TensorView& b, const TensorView& out,
                 const TensorView* bias, double alpha, double beta, int num_threads) {
  Status s = check_num_threads(num_threads);
  if (!s.ok()) return s;
  s = validate_gemm(a, b, out, bias);
  if (!s.ok()) return s;
  if (out.numel() == 0) return Status::Ok();  // M, N or a batch dim is 0

  // The contract is float32 arithmetic, so BLAS's "beta == 0 ignores C" rule
  // applies to beta as it will be used, i.e. after the cast.
  Problem p;
  const int32_t nb = a.ndim - 2;
  p.a = &a, p.b = &b, p.out = &out;
  p.alpha = static_cast<float>(alpha);
  p.beta = static_cast<float>(beta);
  p.bias = p.beta != 0.0f ? bias : nullptr;
  p.M = a.sizes[nb], p.K = a.sizes[nb + 1], p.N = b.sizes[nb + 1];
  p.batches = 1;
  for (int32_t d = 0; d < nb; ++d) p.batches *= a.sizes[d];
  if (weight_stream_applies(p)) return run_weight_stream(p, num_threads);
  return small_m_applies(p) ? run_small_m(p, num_threads) : run(p, num_threads);
}

}  // namespace

Status gemm_decoding(const TensorView& a, const TensorView& b, const uint16_t* table,
                     const TensorView& out, int num_threads) {
  try {
    Problem p;
    p.a = &a, p.b = &b, p.out = &out, p.bias = nullptr;
    p.alpha = 1.0f, p.beta = 0.0f;
    p.M = a.sizes[0], p.K = a.sizes[1], p.N = b.sizes[1], p.batches = 1;
    if (out.numel() == 0) return Status::Ok();
    if (weight_stream_applies(p, true)) return run_weight_stream(p, num_threads, table);
    return run(p, num_threads, table);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: ") + e.what());
  }
}

Status gemm(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
            double alpha, double beta, int num_threads) {
  // Only allocation can throw here (messages, workspaces).
  try {
    return gemm_impl(a, b, out, bias, alpha, beta, num_threads);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: ") + e.what());
  } catch (...) {
    return Status::Internal("gemm: unknown C++ exception");
  }
}

}  // namespace cpu
}  // namespace hetero
