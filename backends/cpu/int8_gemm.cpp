// The BLIS loop nest around the int8 micro-kernel (kernels.h Int8Gemm), as
// gemm.cpp runs the float ones, with int32 accumulators straight in c:
//
//   Ap = pack(a)                                  all of a, once, shared
//   per thread, its columns:
//   for jc step NC:          colsum = 0
//     for pc in K step KC:   Bp = pack(b[pc:+KC, jc:+NC]), colsum += its sums
//       for ir in M step mr:   for jr in NC step nr:
//         c[ir, jr] (+)= Ap sliver . Bp sliver
//     c[:, jc:+NC] -= 128 * colsum     (a went in as a + 128)
//
// Blocks: a KC x NC Bp (256 KiB) stays in the 1 MiB L2 while every row
// sliver passes over it; an mr x KC piece of Ap (8 KiB) in L1.

#include "int8_gemm.h"

#include <algorithm>
#include <vector>

#include "thread_pool.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kKC = 1024;  // a multiple of 4: blocks start on whole quads
constexpr int64_t kNC = 240;   // whole slivers of 48
constexpr int64_t kMinMacsPerThread = int64_t{1} << 20;

}  // namespace

void int8_gemm(const Int8Gemm& g, const uint8_t* a, int64_t ars, int64_t acs, const uint8_t* b,
               int64_t brs, int64_t bcs, int64_t M, int64_t N, int64_t K, int32_t* c,
               int64_t ldc, int threads) {
  const int64_t quads = ceil_div(K, 4), row_slivers = ceil_div(M, g.mr);
  const int64_t sliver_bytes = quads * g.mr * 4;
  thread_local std::vector<uint8_t> packed_a_storage;  // the caller's: threads get the pointer
  packed_a_storage.resize(static_cast<size_t>(row_slivers * sliver_bytes));
  uint8_t* packed_a = packed_a_storage.data();
  const int t = threads_for_work(threads, M * N * std::max<int64_t>(K, 1), kMinMacsPerThread);
  std::vector<std::vector<uint8_t>> packed_b(static_cast<size_t>(t));
  std::vector<std::vector<int32_t>> colsum(static_cast<size_t>(t));
  for (int i = 0; i < t; ++i) {
    packed_b[i].resize(static_cast<size_t>(kKC * kNC));
    colsum[i].resize(static_cast<size_t>(kNC));
  }
  parallel_run(t, [&](int i) {  // a's row slivers, packed by all threads
    int64_t s0, s1;
    split_range(row_slivers, t, i, &s0, &s1);
    if (s1 > s0) {
      g.pack_a(a + s0 * g.mr * ars, ars, acs, std::min(M, s1 * g.mr) - s0 * g.mr, K,
               packed_a + s0 * sliver_bytes);
    }
  });
  parallel_run(t, [&](int i) {
    int64_t n0, n1;
    split_range(ceil_div(N, g.nr), t, i, &n0, &n1);
    n0 *= g.nr, n1 = std::min(n1 * g.nr, N);
    uint8_t* bp = packed_b[i].data();
    int32_t* sums = colsum[i].data();
    for (int64_t jc = n0; jc < n1; jc += kNC) {
      const int64_t nc = std::min(kNC, n1 - jc), col_slivers = ceil_div(nc, g.nr);
      std::fill(sums, sums + col_slivers * g.nr, 0);
      for (int64_t pc = 0; pc < K; pc += kKC) {
        const int64_t kc = std::min(kKC, K - pc), kq = ceil_div(kc, 4);
        g.pack_b(b + pc * brs + jc * bcs, brs, bcs, kc, nc, bp, sums);
        for (int64_t ir = 0; ir < row_slivers; ++ir) {
          const uint8_t* ap = packed_a + ir * sliver_bytes + (pc / 4) * g.mr * 4;
          for (int64_t jr = 0; jr < col_slivers; ++jr) {
            g.micro(kq, ap, bp + jr * kq * g.nr * 4, c + ir * g.mr * ldc + jc + jr * g.nr, ldc,
                    pc > 0);
          }
        }
      }
      for (int64_t r = 0; r < row_slivers * g.mr; ++r) {
        int32_t* cr = c + r * ldc + jc;
        for (int64_t j = 0; j < col_slivers * g.nr; ++j) cr[j] -= 128 * sums[j];
      }
    }
  });
}

}  // namespace cpu
}  // namespace hetero
