// out = alpha * (a @ b) + beta * bias for bf16 a of up to hundreds of rows and b = w.t()
// (a Linear weight, rows of w contiguous along k), on the kernel set's
// WeightStream (kernels.h: the amx set's AMX tiles, the avx512 set's vdpbf16ps).
//
// The BLIS path (gemm.cpp) packs b before multiplying: for a few rows of a
// that is a second pass over the weight's bytes, which is what such a call
// is bound by. Here the tiles read w where it lies, once, and only a (a few
// rows, packed once per call as pairs of k) is rearranged.
//
// Threads split the columns (rows of w) in whole WeightStream::cols chunks:
//
//   xp = pack(a)                                  shared, each thread packing a share
//   for each thread's chunk group (kChunksPerStore chunks):
//     for each chunk: C[:, chunk] = xp . w[chunk rows]^T       (WeightStream::multiply)
//     out[:, group] = alpha * C + beta * bias                  (gemm_problem.h store)
//
// A last chunk past N is copied into a zero-padded block first, so the tiles
// never read past w.
//
// Byte-coded operands (float8, int8: scaled_gemm.cpp through gemm_decoding)
// take the same loop: a is decoded to bf16 once per call, and each chunk of w
// (ws.cols rows of K codes) is decoded into that block just before its tiles
// read it, from L2 instead of memory; the weight is still read from memory
// once, at one byte per value.

#include "gemm_weight_stream.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kChunksPerStore = 8;
// Weight elements a thread must stream to be worth waking (as gemm_small_m.cpp).
constexpr int64_t kMinWeightPerThread = int64_t{1} << 15;

// Columns [col, col + ws.cols) of one batch element into c (row stride ldc);
// table: byte-coded w, decoded through it into `block` first.
void multiply_chunk(const WeightStream& ws, const Problem& p, const Gemm2d& g, const uint16_t* table,
                    const uint16_t* xp, int64_t col, uint16_t* block, float* c, int64_t ldc) {
  const int64_t ldw = g.b.col_stride, n = std::min(ws.cols, p.N - col);
  if (table != nullptr) {
    const auto* w = static_cast<const uint8_t*>(g.b.data) + col * ldw;
    active_kernels().quantized->decode_rows(w, ldw, n, p.K, table, block, p.K);
  } else {
    const auto* w = static_cast<const uint16_t*>(g.b.data) + col * ldw;
    if (n == ws.cols) return ws.multiply(xp, p.M, p.K, w, ldw, c, ldc);
    for (int64_t j = 0; j < n; ++j) std::memcpy(block + j * p.K, w + j * ldw, sizeof(uint16_t) * p.K);
  }
  std::memset(block + n * p.K, 0, sizeof(uint16_t) * static_cast<size_t>((ws.cols - n) * p.K));
  ws.multiply(xp, p.M, p.K, block, p.K, c, ldc);
}

// a (M x K) of byte codes as bf16 rows (row stride K) in dst.
void decode_a(const MatrixRef& a, int64_t M, int64_t K, const uint16_t* table, uint16_t* dst) {
  const auto* codes = static_cast<const uint8_t*>(a.data);
  if (a.col_stride == 1) return active_kernels().quantized->decode_rows(codes, a.row_stride, M, K, table, dst, K);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k = 0; k < K; ++k) dst[i * K + k] = table[codes[i * a.row_stride + k * a.col_stride]];
  }
}

}  // namespace

bool weight_stream_applies(const Problem& p, bool decoding) {
  const WeightStream* ws = active_kernels().weight_stream;
  const int32_t nb = p.b->ndim - 2;
  const bool bf16 = p.a->dtype == DType::bfloat16 && p.b->dtype == DType::bfloat16;
  return ws != nullptr && (decoding || bf16) && p.b->strides[nb] == 1 && p.K > 0 &&
         p.K % ws->k_align == 0 && p.M >= ws->min_rows && p.M <= ws->max_rows;
}

Status run_weight_stream(const Problem& p, int requested_threads, const uint16_t* table) {
  const WeightStream& ws = *active_kernels().weight_stream;
  const int threads = threads_for_work(requested_threads, p.N * p.K * p.batches, kMinWeightPerThread);
  const int64_t ldc = kChunksPerStore * ws.cols;
  const int64_t x_floats = ceil_div(round_up(p.M, 32) * p.K, 2);
  const int64_t decoded_floats = table != nullptr ? ceil_div(p.M * p.K, 2) : 0;
  std::vector<float*> scratch;
  float* packed_x;
  float* decoded_x;
  try {
    scratch = per_thread_scratch(threads, p.M * ldc + ceil_div(ws.cols * p.K, 2) + 16);
    thread_local Workspace x_space, decoded_space;
    packed_x = x_space.reserve(x_floats);
    decoded_x = decoded_space.reserve(decoded_floats);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: cannot allocate workspace: ") + e.what());
  }
  auto* xp = reinterpret_cast<uint16_t*>(packed_x);
  const int64_t chunks = ceil_div(p.N, ws.cols);
  for (int64_t bi = 0; bi < p.batches; ++bi) {
    const Gemm2d g = p.element(bi);
    Barrier packed(threads);
    parallel_run(threads, [&](int t) {
      // Each thread packs (decoding first, for byte codes) a share of x's
      // 32-row blocks; all of x is used by every thread after the barrier.
      int64_t r0, r1;
      split_range(ceil_div(p.M, 32), threads, t, &r0, &r1);
      r0 = std::min(32 * r0, p.M), r1 = std::min(32 * r1, p.M);
      if (r1 > r0) {
        const MatrixRef a{g.a.at(r0, 0), g.a.dtype, g.a.row_stride, g.a.col_stride};
        if (table != nullptr) {
          auto* x16 = reinterpret_cast<uint16_t*>(decoded_x) + r0 * p.K;
          decode_a(a, r1 - r0, p.K, table, x16);
          ws.pack_x(x16, p.K, 1, r1 - r0, p.K, xp + r0 * p.K);
        } else {
          ws.pack_x(static_cast<const uint16_t*>(a.data), a.row_stride, a.col_stride, r1 - r0, p.K,
                    xp + r0 * p.K);
        }
      }
      packed.wait();
      float* c = scratch[t];
      auto* block = reinterpret_cast<uint16_t*>(c + round_up(p.M * ldc, 16));
      int64_t c0, c1;
      split_range(chunks, threads, t, &c0, &c1);
      for (int64_t q0 = c0; q0 < c1; q0 += kChunksPerStore) {
        const int64_t q1 = std::min(c1, q0 + kChunksPerStore);
        for (int64_t q = q0; q < q1; ++q) multiply_chunk(ws, p, g, table, xp, q * ws.cols, block, c + (q - q0) * ws.cols, ldc);
        const int64_t col = q0 * ws.cols;
        store(c, ldc, g, 0, col, p.M, std::min(q1 * ws.cols, p.N) - col, p.alpha, p.beta);
      }
    });
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace hetero
