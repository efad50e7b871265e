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
// Threads form a tm x tn grid over (rows, columns) of each batch element; the
// tm threads sharing a column range pack their Bp together and meet at a
// barrier. Many small batch elements are instead dealt out whole, one thread
// each. Decode-shaped calls (a few rows of a) take gemm_small_m.cpp instead.

#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "gemm_problem.h"
#include "gemm_small_m.h"
#include "kernels.h"
#include "thread_pool.h"
#include "hetero/gemm_args.h"
#include "hetero/view_checks.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

// MC x KC floats of Ap (144 KiB) sit in a 512 KiB L2 next to Bp slivers; a
// KC x NR Bp sliver (16 KiB) stays in a 32 KiB L1 while MC / MR tiles use it.
// NC bounds the accumulator workspace and how often Ap is repacked (N / NC).
constexpr int64_t kMC = 144;  // multiple of kMR
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 512;  // multiple of kNR
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "blocks must be whole slivers");

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
// row groups, which share one packed Bp.
Plan make_plan(const Problem& p, int requested) {
  Plan plan;
  const int64_t macs = p.M * p.N * std::max<int64_t>(p.K, 1) * p.batches;
  plan.threads = threads_for_work(requested, macs, kMinMacsPerThread);
  if (plan.threads > 1 && p.batches >= plan.threads && p.M * p.N * p.K <= kSmallMacs) {
    plan.whole_batches = true;
    return plan;
  }
  const int64_t m_slivers = ceil_div(p.M, kMR), n_slivers = ceil_div(p.N, kNR);
  int64_t best = -1;
  for (int tm = plan.threads; tm >= 1; --tm) {
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

// Scratch of one thread (Ap, C) and of one thread group (Bp).
struct Buffers {
  float* packed_a;
  float* acc;
  float* packed_b;
};

constexpr int64_t kAccStride = kNC;                 // row stride of the C workspace
constexpr int64_t kAccFloats = kMC * kNC;

// Rows [m0, m1) x columns [n0, n1) of one batch element, by one member of a
// group of `members` threads that share columns, Bp and `barrier`.
void compute_block(const KernelSet& kern, const Problem& p, const Gemm2d& g, int64_t m0,
                   int64_t m1, int64_t n0, int64_t n1, int member, int members, Barrier* barrier,
                   const Buffers& buf) {
  const int64_t K = p.K;
  for (int64_t jc = n0; jc < n1; jc += kNC) {
    const int64_t nc = std::min(kNC, n1 - jc);
    const int64_t slivers = ceil_div(nc, kNR);
    if (K > 0) {
      if (members > 1) barrier->wait();  // everyone is done with the previous Bp
      int64_t s0, s1;
      split_range(slivers, members, member, &s0, &s1);
      if (s1 > s0) {
        const MatrixRef b{g.b.at(0, jc + s0 * kNR), g.b.dtype, g.b.row_stride, g.b.col_stride};
        kern.pack_b(b, K, std::min(nc - s0 * kNR, (s1 - s0) * kNR), buf.packed_b + s0 * K * kNR);
      }
      if (members > 1) barrier->wait();  // Bp complete
    }
    for (int64_t ic = m0; ic < m1; ic += kMC) {
      const int64_t mc = std::min(kMC, m1 - ic);
      const int64_t row_slivers = ceil_div(mc, kMR);
      if (K == 0) {
        std::memset(buf.acc, 0, sizeof(float) * static_cast<size_t>(row_slivers * kMR * kAccStride));
      }
      for (int64_t pc = 0; pc < K; pc += kKC) {
        const int64_t kc = std::min(kKC, K - pc);
        const MatrixRef a{g.a.at(ic, pc), g.a.dtype, g.a.row_stride, g.a.col_stride};
        kern.pack_a(a, mc, kc, buf.packed_a);
        for (int64_t jr = 0; jr < slivers; ++jr) {
          const float* b_sliver = buf.packed_b + jr * K * kNR + pc * kNR;
          for (int64_t ir = 0; ir < row_slivers; ++ir) {
            kern.micro(kc, buf.packed_a + ir * kc * kMR, b_sliver,
                       buf.acc + ir * kMR * kAccStride + jr * kNR, kAccStride, pc > 0);
          }
        }
      }
      store(buf.acc, kAccStride, g, ic, jc, mc, nc, p.alpha, p.beta);
    }
  }
}

Status run(const Problem& p, int requested_threads) {
  const KernelSet& kern = active_kernels();
  const Plan plan = make_plan(p, requested_threads);
  const int groups = plan.whole_batches ? plan.threads : plan.tn;
  const int64_t packed_b_floats = std::max<int64_t>(p.K, 1) * kNC;

  // Reserve everything before the threads start: only this can throw.
  thread_local std::vector<Workspace> per_thread, per_group;
  std::vector<Buffers> buffers(static_cast<size_t>(plan.threads));
  try {
    if (per_thread.size() < static_cast<size_t>(plan.threads)) per_thread.resize(plan.threads);
    if (per_group.size() < static_cast<size_t>(groups)) per_group.resize(groups);
    for (int t = 0; t < plan.threads; ++t) {
      const int group = plan.whole_batches ? t : t / plan.tm;
      float* scratch = per_thread[t].reserve(kMC * kKC + kAccFloats);
      buffers[t] = {scratch, scratch + kMC * kKC,
                    per_group[group].reserve(packed_b_floats)};
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: cannot allocate workspace: ") + e.what());
  }

  std::vector<std::unique_ptr<Barrier>> barriers;
  for (int gi = 0; gi < groups; ++gi) barriers.emplace_back(new Barrier(plan.tm));

  parallel_run(plan.threads, [&](int t) {
    if (plan.whole_batches) {
      for (int64_t bi = t; bi < p.batches; bi += plan.threads) {
        compute_block(kern, p, p.element(bi), 0, p.M, 0, p.N, 0, 1, nullptr, buffers[t]);
      }
      return;
    }
    const int group = t / plan.tm, member = t % plan.tm;
    int64_t m0, m1, n0, n1;
    split_range(ceil_div(p.M, kMR), plan.tm, member, &m0, &m1);
    split_range(ceil_div(p.N, kNR), plan.tn, group, &n0, &n1);
    m0 = std::min(m0 * kMR, p.M), m1 = std::min(m1 * kMR, p.M);
    n0 = std::min(n0 * kNR, p.N), n1 = std::min(n1 * kNR, p.N);
    for (int64_t bi = 0; bi < p.batches; ++bi) {
      compute_block(kern, p, p.element(bi), m0, m1, n0, n1, member, plan.tm,
                    barriers[group].get(), buffers[t]);
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
  return small_m_applies(p) ? run_small_m(p, num_threads) : run(p, num_threads);
}

}  // namespace

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
