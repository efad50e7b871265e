// out = (a · scale_a) @ (b · scale_b) + bias on the CPU, a and b byte-coded
// (float8 or int8; csrc/hetero/quantized.h), every value exact in bf16.
//
// Two paths, both summing exact bf16 products in float32:
//   decode-shaped  M <= the set's small_m_max_rows (16; 32 on avx2), b =
//                  w.t() (unit k stride, a Linear weight) and a kernel set
//                  with a streaming product: groups of <= 4 rows of a
//                  stream the byte-coded w once each,
//                  decoding in registers (kernels.h QuantizedSmallM); columns
//                  are split over threads. Decode is where the 1-byte weight
//                  halves the bytes a bf16 weight moves. On the amx set only
//                  one such group (K in 32s): more rows go to its weight
//                  stream below, which reads w once for up to 128 rows.
//   int8, no block scales, 3 to 128 rows, b = w.t(), on the amx set: the
//                  AMX-INT8 stream (kernels.h Int8Stream), exact int32 sums
//                  of the bytes as they are, w read once where it lies.
//   int8, no block scales, where the set has vpdpbusd: int8_gemm.cpp, exact
//                  int32 sums of the bytes as they are.
//   otherwise      gemm.cpp's bf16 GEMM into a float32 tile, decoding a and b
//                  block by block as it packs them (where the kernel set has
//                  a bf16 pair-dot GEMM; else both are decoded once, before;
//                  on the amx set, x @ w.t() of 3-128 rows runs its weight
//                  stream, decoding w a chunk of rows at a time),
//                  K-slice by K-slice where the sum must be split: per 128-deep
//                  block for block scales, per 512 for int8 (whose float32 sums
//                  stay exact integers below 2^24 and go to int32), else all of K.
// The epilogue scales (tensor/row recipes), adds the bias and rounds once.

#include "scaled_gemm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "gemm.h"
#include "gemm_problem.h"
#include "int8_gemm.h"
#include "kernels.h"
#include "thread_pool.h"
#include "workspace.h"
#include "hetero/quantized.h"
#include "hetero/view_checks.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kBlock = 128;      // the block recipe's depth
constexpr int64_t kExactSlice = 512; // int8: 512 * 128 * 128 = 2^23 < 2^24
constexpr int64_t kMinBytesPerThread = int64_t{1} << 16;

// The 256 bf16 codes of each byte-coded dtype, made once.
const uint16_t* table_of(DType dt) {
  static const std::vector<std::vector<uint16_t>> tables = [] {
    std::vector<std::vector<uint16_t>> t(11);
    for (DType d : {DType::float8_e4m3fn, DType::float8_e5m2, DType::float8_e4m3fnuz,
                    DType::float8_e5m2fnuz, DType::int8}) {
      t[static_cast<size_t>(d)].resize(256);
      bf16_table(d, t[static_cast<size_t>(d)].data());
    }
    return t;
  }();
  return tables[static_cast<size_t>(dt)].data();
}

struct Call {
  const TensorView *a, *b, *scale_a, *scale_b, *bias, *out;
  ScaleRecipe recipe;
  int64_t M, N, K;
  bool exact_int;  // int8: sums in int32
};

Status check_2d(const TensorView& v, const char* name, int64_t rows, int64_t cols) {
  if (v.sizes[0] != rows || v.sizes[1] != cols) {
    const int64_t want[2] = {rows, cols};
    return invalid(name, "shape " + join(want, 2), join(v.sizes, v.ndim));
  }
  return Status::Ok();
}

Status validate(const Call& c) {
  Status s;
  const TensorView* views[] = {c.a, c.b, c.out};
  const char* names[] = {"a", "b", "out"};
  for (int i = 0; i < 3; ++i) {
    if (!(s = check_view(*views[i], names[i], 2)).ok()) return s;
    if (views[i]->ndim != 2) return invalid(names[i], "2 dims", join(views[i]->sizes, views[i]->ndim));
  }
  if (!is_byte_coded(c.a->dtype)) {
    return invalid("a", "a float8 or int8 dtype", dtype_name(c.a->dtype));
  }
  if (c.b->dtype != c.a->dtype) return invalid("b", std::string("dtype ") + dtype_name(c.a->dtype), dtype_name(c.b->dtype));
  if (!(s = check_2d(*c.b, "b", c.K, c.N)).ok() || !(s = check_2d(*c.out, "out", c.M, c.N)).ok()) {
    return s;
  }
  const DType od = c.out->dtype;
  const bool int_out = od == DType::int32;
  if (od != DType::float32 && od != DType::float16 && od != DType::bfloat16 && !int_out) {
    return invalid("out", "dtype float32, float16, bfloat16 or int32", dtype_name(od));
  }
  if ((c.scale_a == nullptr) != (c.scale_b == nullptr)) {
    return invalid("scale_b", "a scale exactly when scale_a is given", "a mismatch");
  }
  if (int_out != (c.scale_a == nullptr) || (int_out && (c.a->dtype != DType::int8 || c.bias))) {
    return invalid("out", "int32 exactly for int8 inputs without scales or bias",
                   dtype_name(od));
  }
  if (c.scale_a != nullptr) {
    const int64_t kb = ceil_div(c.K, kBlock), nb = ceil_div(c.N, kBlock);
    const int64_t rows_a = c.recipe == ScaleRecipe::tensor ? 1 : c.M;
    const int64_t cols_a = c.recipe == ScaleRecipe::block ? kb : 1;
    const int64_t rows_b = c.recipe == ScaleRecipe::block ? kb : 1;
    const int64_t cols_b = c.recipe == ScaleRecipe::tensor ? 1 : c.recipe == ScaleRecipe::row ? c.N : nb;
    if (!(s = check_view(*c.scale_a, "scale_a", 2)).ok() || !(s = check_view(*c.scale_b, "scale_b", 2)).ok() ||
        !(s = check_2d(*c.scale_a, "scale_a", rows_a, cols_a)).ok() ||
        !(s = check_2d(*c.scale_b, "scale_b", rows_b, cols_b)).ok()) {
      return s;
    }
    if (c.scale_a->dtype != DType::float32 || c.scale_b->dtype != DType::float32) {
      return invalid("scale_a", "float32 scales", dtype_name(c.scale_a->dtype));
    }
    if (c.recipe == ScaleRecipe::block && c.K % kBlock != 0) {
      return invalid("a", "K a multiple of 128 for block scales", std::to_string(c.K));
    }
  }
  if (c.bias != nullptr) {
    if (!(s = check_view(*c.bias, "bias", 1)).ok()) return s;
    if (c.bias->ndim != 1 || c.bias->sizes[0] != c.N) {
      return invalid("bias", "shape (" + std::to_string(c.N) + ",)", join(c.bias->sizes, c.bias->ndim));
    }
    const DType bd = c.bias->dtype;
    if (bd != DType::float32 && bd != DType::float16 && bd != DType::bfloat16) {
      return invalid("bias", "dtype float32, float16 or bfloat16", dtype_name(bd));
    }
  }
  return Status::Ok();
}

inline float scale_at(const TensorView& s, int64_t i, int64_t j) {
  return static_cast<const float*>(s.data)[i * s.strides[0] + j * s.strides[1]];
}

// rows x cols bytes of a byte-coded matrix (element (i, k) at i * rs + k * cs)
// into dst (row stride ld) as bf16 codes, rows split over threads.
void decode_matrix(const uint8_t* src, int64_t rs, int64_t cs, int64_t rows, int64_t cols,
                   const uint16_t* table, uint16_t* dst, int64_t ld, int threads) {
  const QuantizedKernels& q = *active_kernels().quantized;
  const int t = threads_for_work(threads, rows * cols, kMinBytesPerThread);
  parallel_run(t, [&](int i) {
    int64_t r0, r1;
    split_range(rows, t, i, &r0, &r1);
    if (cs == 1) return q.decode_rows(src + r0 * rs, rs, r1 - r0, cols, table, dst + r0 * ld, ld);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t k = 0; k < cols; ++k) dst[r * ld + k] = table[src[r * rs + k * cs]];
    }
  });
}

// Decode-shaped: float32 (or int32) sums into acc (M x N), before the epilogue.
void run_streaming(const Call& c, const uint16_t* table, void* acc, int threads) {
  const QuantizedKernels& q = *active_kernels().quantized;
  // a's rows with unit k stride (a transposed a is copied: it is small).
  std::vector<uint8_t> a_rows;
  const uint8_t* a = static_cast<const uint8_t*>(c.a->data);
  int64_t lda = c.a->strides[0];
  if (c.a->strides[1] != 1) {
    a_rows.resize(static_cast<size_t>(c.M * c.K));
    for (int64_t i = 0; i < c.M; ++i) {
      for (int64_t k = 0; k < c.K; ++k) a_rows[i * c.K + k] = a[i * c.a->strides[0] + k * c.a->strides[1]];
    }
    a = a_rows.data(), lda = c.K;
  }
  const bool block = c.recipe == ScaleRecipe::block;
  const int t = threads_for_work(threads, c.N * c.K, kMinBytesPerThread);
  parallel_run(t, [&](int i) {
    int64_t j0, j1;  // whole tiles of 4 columns per thread
    split_range(ceil_div(c.N, 4), t, i, &j0, &j1);
    j0 = std::min(j0 * 4, c.N), j1 = std::min(j1 * 4, c.N);
    for (int64_t r0 = 0; r0 < c.M; r0 += kQuantizedRows) {
      QuantizedSmallM p{};
      p.a = a + r0 * lda, p.lda = lda;
      p.w = static_cast<const uint8_t*>(c.b->data), p.ldw = c.b->strides[1];
      p.rows = std::min(kQuantizedRows, c.M - r0), p.depth = c.K;
      p.block = block ? kBlock : c.exact_int ? kExactSlice : 0;
      p.dtype = c.a->dtype, p.table = table;
      if (block) {
        p.scale_a = static_cast<const float*>(c.scale_a->data) + r0 * c.scale_a->strides[0];
        p.sa_rows = c.scale_a->strides[0], p.sa_cols = c.scale_a->strides[1];
        p.scale_b = static_cast<const float*>(c.scale_b->data);
        p.sb_rows = c.scale_b->strides[0], p.sb_cols = c.scale_b->strides[1];
      }
      p.exact_int = c.exact_int;
      p.c = static_cast<char*>(acc) + r0 * c.N * 4, p.ldc = c.N;
      q.small_m(p, j0, j1);
    }
  });
}

// int8 of a few rows on the kernel set's Int8Stream (AMX tiles): exact int32
// sums into exact (M x N). Threads split w's rows in whole chunks; a last
// chunk past N goes through a zero-padded copy of its rows.
Status run_int8_stream(const Call& c, const Int8Stream& s, int32_t* exact, int threads) {
  const int64_t M = c.M, N = c.N, K = c.K, ldw = c.b->strides[1];
  const auto* w = static_cast<const uint8_t*>(c.b->data);
  const int t = threads_for_work(threads, N * K, kMinBytesPerThread);
  thread_local std::vector<uint8_t> packed_x;
  std::vector<uint8_t> tail_w;
  std::vector<int32_t> tail_c;
  try {
    packed_x.resize(static_cast<size_t>(round_up(M, 32) * K));
    if (N % s.cols != 0) {
      tail_w.assign(static_cast<size_t>(s.cols * K), 0);
      tail_c.resize(static_cast<size_t>(M * s.cols));
      const int64_t col = N / s.cols * s.cols;
      for (int64_t j = col; j < N; ++j) std::memcpy(&tail_w[(j - col) * K], w + j * ldw, static_cast<size_t>(K));
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("scaled_gemm: cannot allocate workspace: ") + e.what());
  }
  uint8_t* xp = packed_x.data();  // the caller's buffer: threads get the pointer
  s.pack_x(static_cast<const uint8_t*>(c.a->data), c.a->strides[0], c.a->strides[1], M, K, xp);
  const int64_t chunks = ceil_div(N, s.cols);
  parallel_run(t, [&](int i) {
    int64_t q0, q1;
    split_range(chunks, t, i, &q0, &q1);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t col = q * s.cols;
      if (col + s.cols <= N) {
        s.multiply(xp, M, K, w + col * ldw, ldw, exact + col, N);
        continue;
      }
      s.multiply(xp, M, K, tail_w.data(), K, tail_c.data(), s.cols);
      for (int64_t r = 0; r < M; ++r) {
        std::memcpy(exact + r * N + col, &tail_c[r * s.cols], sizeof(int32_t) * static_cast<size_t>(N - col));
      }
    }
  });
  return Status::Ok();
}

// The general path: decoded operands, the bf16 GEMM slice by slice.
Status run_decoded(const Call& c, const uint16_t* table, float* total, int32_t* exact,
                   int threads) {
  thread_local Workspace a_space, b_space, tile_space;
  const int64_t M = c.M, N = c.N, K = c.K;
  // With a bf16 pair-dot GEMM, the operands are decoded block by block while it
  // packs them (gemm_decoding); otherwise whole, here, before the GEMM.
  const bool in_packing = active_kernels().bf16_gemm != nullptr;
  uint16_t* a16 = nullptr;
  uint16_t* b16 = nullptr;
  const bool by_columns = c.b->strides[0] == 1 && c.b->strides[1] != 1;
  if (!in_packing) {
    a16 = reinterpret_cast<uint16_t*>(a_space.reserve(ceil_div(M * K, 2)));
    b16 = reinterpret_cast<uint16_t*>(b_space.reserve(ceil_div(K * N, 2)));
    const auto* a = static_cast<const uint8_t*>(c.a->data);
    const auto* b = static_cast<const uint8_t*>(c.b->data);
    decode_matrix(a, c.a->strides[0], c.a->strides[1], M, K, table, a16, K, threads);
    // b16 keeps b's orientation: w.t() stays (N rows of K), else (K rows of N).
    if (by_columns) {
      decode_matrix(b, c.b->strides[1], 1, N, K, table, b16, K, threads);
    } else {
      decode_matrix(b, c.b->strides[0], c.b->strides[1], K, N, table, b16, N, threads);
    }
  }
  const bool block = c.recipe == ScaleRecipe::block;
  const int64_t slice = block ? kBlock : c.exact_int ? kExactSlice : std::max<int64_t>(K, 1);
  const bool whole = slice >= K && !block;  // one GEMM into total, scaled later
  float* tile = whole && !c.exact_int ? total : tile_space.reserve(M * N);
  if (!whole || c.exact_int) {
    if (c.exact_int) std::fill(exact, exact + M * N, 0);
    else std::fill(total, total + M * N, 0.0f);
  }
  for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += slice) {
    const int64_t depth = std::min(slice, K - k0);
    TensorView av = *c.a, bv = *c.b, tv;
    av.sizes[1] = depth, bv.sizes[0] = depth;
    if (in_packing) {  // the slice of the byte-coded operands themselves
      av.data = av.element_ptr(k0 * av.strides[1]);
      bv.data = bv.element_ptr(k0 * bv.strides[0]);
    } else {
      av.data = a16 + k0, av.dtype = DType::bfloat16, av.strides[0] = K, av.strides[1] = 1;
      bv.dtype = DType::bfloat16;
      if (by_columns) bv.data = b16 + k0, bv.strides[0] = 1, bv.strides[1] = K;
      else bv.data = b16 + k0 * N, bv.strides[0] = N, bv.strides[1] = 1;
    }
    tv.data = tile, tv.dtype = DType::float32, tv.ndim = 2;
    tv.sizes[0] = M, tv.sizes[1] = N, tv.strides[0] = N, tv.strides[1] = 1;
    const Status s = in_packing ? gemm_decoding(av, bv, table, tv, threads)
                                : gemm(av, bv, tv, nullptr, 1.0, 0.0, threads);
    if (!s.ok()) return s;
    if (whole && !c.exact_int) break;
    const int64_t kb = k0 / kBlock;
    for (int64_t i = 0; i < M; ++i) {  // fold the slice into the totals
      const float* ti = tile + i * N;
      if (c.exact_int) {
        int32_t* ei = exact + i * N;
        for (int64_t j = 0; j < N; ++j) ei[j] += static_cast<int32_t>(ti[j]);
      } else if (block) {
        float* si = total + i * N;
        const float sa = scale_at(*c.scale_a, i, kb);
        for (int64_t j = 0; j < N; ++j) si[j] += ti[j] * (sa * scale_at(*c.scale_b, kb, j / kBlock));
      }
      // (no other case has several slices)
    }
    if (K == 0) break;
  }
  return Status::Ok();
}

// out(i, j) = sums (scaled for tensor/row recipes) + bias, rounded once; the
// sums have row stride ld.
void epilogue(const Call& c, const float* total, const int32_t* exact, int64_t ld, int threads) {
  const TensorView& out = *c.out;
  const bool late_scales = c.scale_a != nullptr && c.recipe != ScaleRecipe::block;
  const BiasMatrix bias = c.bias == nullptr ? BiasMatrix{nullptr, DType::float32, 0, 0}
                                            : BiasMatrix{c.bias->data, c.bias->dtype, 0, c.bias->strides[0]};
  const int t = threads_for_work(threads, c.M * c.N, kMinBytesPerThread);
  parallel_run(t, [&](int part) {
    int64_t i0, i1;
    split_range(c.M, t, part, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) {
      const float sa = late_scales ? scale_at(*c.scale_a, c.recipe == ScaleRecipe::row ? i : 0, 0) : 1.0f;
      for (int64_t j = 0; j < c.N; ++j) {
        const int64_t at = i * out.strides[0] + j * out.strides[1];
        if (out.dtype == DType::int32) {
          static_cast<int32_t*>(out.data)[at] = exact[i * ld + j];
          continue;
        }
        float v = c.exact_int ? static_cast<float>(exact[i * ld + j]) : total[i * ld + j];
        if (late_scales) v = v * sa * scale_at(*c.scale_b, 0, c.recipe == ScaleRecipe::row ? j : 0);
        if (c.bias != nullptr) v += bias.at(0, j);
        switch (out.dtype) {
          case DType::float16: static_cast<Half*>(out.data)[at] = float_to_half(v); break;
          case DType::bfloat16: static_cast<BFloat16*>(out.data)[at] = float_to_bfloat16(v); break;
          default: static_cast<float*>(out.data)[at] = v; break;
        }
      }
    }
  });
}

Status scaled_gemm_impl(const TensorView& a, const TensorView& b, const TensorView* scale_a,
                        const TensorView* scale_b, ScaleRecipe recipe, const TensorView* bias,
                        const TensorView& out, int num_threads) {
  Status s = check_num_threads(num_threads);
  if (!s.ok()) return s;
  if (a.ndim != 2 || b.ndim != 2) return invalid(a.ndim != 2 ? "a" : "b", "2 dims", "another rank");
  Call c{&a, &b, scale_a, scale_b, bias, &out, recipe, a.sizes[0], b.sizes[1], a.sizes[1], false};
  if (!(s = validate(c)).ok()) return s;
  c.exact_int = a.dtype == DType::int8 && recipe != ScaleRecipe::block;
  if (out.numel() == 0) return Status::Ok();

  const uint16_t* table = table_of(a.dtype);
  const QuantizedKernels& q = *active_kernels().quantized;
  const Int8Stream* int8_stream = q.int8_stream;
  if (int8_stream != nullptr && !(c.exact_int && b.strides[0] == 1 && c.K > 0 && c.K % int8_stream->k_align == 0 &&
                                  c.M >= int8_stream->min_rows && c.M <= int8_stream->max_rows)) {
    int8_stream = nullptr;
  }
  // Where the bf16 weight stream serves the decoded product (gemm_decoding),
  // the quantized stream keeps only the rows below it (at least its own step).
  const WeightStream* ws = active_kernels().weight_stream;
  const int64_t small_rows = ws != nullptr && c.K % ws->k_align == 0
                                 ? std::clamp(ws->min_rows - 1, kQuantizedRows, q.small_m_max_rows)
                                 : q.small_m_max_rows;
  const bool streaming = int8_stream == nullptr && q.small_m != nullptr && c.M <= small_rows &&
                         b.strides[0] == 1 && c.K > 0;
  const bool int8_gemm_applies = int8_stream == nullptr && !streaming && c.exact_int &&
                                 q.int8_gemm != nullptr && c.K > 0;
  // The sums: M x N (padded to whole micro-tiles for the int8 GEMM), float or int32.
  const int64_t ld = int8_gemm_applies ? round_up(c.N, q.int8_gemm->nr) : c.N;
  const int64_t rows = int8_gemm_applies ? round_up(c.M, q.int8_gemm->mr) : c.M;
  thread_local Workspace acc_space;
  float* total = acc_space.reserve(rows * ld);
  int32_t* exact = reinterpret_cast<int32_t*>(total);  // one or the other is used
  if (int8_stream != nullptr) {
    if (!(s = run_int8_stream(c, *int8_stream, exact, num_threads)).ok()) return s;
  } else if (streaming) {
    run_streaming(c, table, total, num_threads);
  } else if (int8_gemm_applies) {
    int8_gemm(*q.int8_gemm, static_cast<const uint8_t*>(a.data), a.strides[0], a.strides[1],
              static_cast<const uint8_t*>(b.data), b.strides[0], b.strides[1], c.M, c.N, c.K,
              exact, ld, num_threads);
  } else if (!(s = run_decoded(c, table, total, exact, num_threads)).ok()) {
    return s;
  }
  epilogue(c, total, exact, ld, num_threads);
  return Status::Ok();
}

}  // namespace

Status scaled_gemm(const TensorView& a, const TensorView& b, const TensorView* scale_a,
                   const TensorView* scale_b, ScaleRecipe recipe, const TensorView* bias,
                   const TensorView& out, int num_threads) {
  try {  // only allocation can throw here
    return scaled_gemm_impl(a, b, scale_a, scale_b, recipe, bias, out, num_threads);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("scaled_gemm: ") + e.what());
  } catch (...) {
    return Status::Internal("scaled_gemm: unknown C++ exception");
  }
}

}  // namespace cpu
}  // namespace hetero
