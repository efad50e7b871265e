// The avx512 set's fp32 GEMM (kernels.h FloatGemm): packing into slivers of
// 12 rows / 32 columns and a 12 x 32 micro-kernel in zmm registers. The amx
// set keeps it for float32 and fp16 (AMX multiplies bf16 only). This file
// alone is compiled with the avx512 flags of kernels_avx512.cpp.
//
// Why this tile: CPUs with two 512-bit FMA units (Intel server cores) run
// twice the flops per cycle of the avx2 set's 6 x 16 tile in ymm registers;
// CPUs that split a 512-bit FMA in two (AMD Zen 4) run the same flops in half
// the instructions. Per k, two B vectors and twelve broadcast A values feed
// 24 FMAs into 24 independent accumulators, enough to cover the FMA latency
// (4 cycles) on two ports: 27 of the 32 zmm registers.
//
// Blocks: MC = 144 (12 slivers), KC = 256, NC = 512 as the 6 x 16 sets, so
// both sum every element over the same blocks of k in the same order and agree
// bit for bit. A KC x 32 B sliver (32 KiB) stays in L1 next to the A sliver
// (12 KiB) streamed past it.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "avx512_vectors.h"
#include "pack_generic.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kRows = 12, kCols = 32;
// Above 32 rows this tile beats the small-M products. Between 17 and 32 it
// wins with the weight in cache (x @ w at 24 rows: 0.85x PyTorch against
// 0.67x), but with a Linear weight read from memory, as a served model reads
// it, the two are close (hetero bench's Llama-3-8B rows at 32 rows), so those
// calls keep the path that reads the weight once; measured on an AMX Xeon
// (bench/RESULTS.md).
constexpr int64_t kSmallMRows = 32;
static_assert(kFloatMC % kRows == 0 && kFloatNC % kCols == 0, "blocks must be whole slivers");

using avx512::load16;
using avx512::transpose16;

// ---------------------------------------------------------------- packing

// A with unit column stride (row-major activations): per sliver, 16 k's of
// its 12 rows are loaded as 16-wide rows (4 of them zero), transposed in
// registers, and each column's 12 values stored.
template <typename In>
void pack_a_rows(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  const In* a = static_cast<const In*>(src.data);
  const int64_t full = rows / kRows;
  constexpr __mmask16 kSliverLanes = (1u << kRows) - 1;
  for (int64_t s = 0; s < full; ++s, dst += depth * kRows) {
    const In* row0 = a + s * kRows * src.row_stride;
    int64_t k = 0;
    for (; k + 16 <= depth; k += 16) {
      __m512i r[16];
      for (int i = 0; i < kRows; ++i) r[i] = _mm512_castps_si512(load16(row0 + i * src.row_stride + k));
      for (int i = kRows; i < 16; ++i) r[i] = _mm512_setzero_si512();
      transpose16(r);  // r[kk] = column k + kk, rows 0..11 in lanes 0..11
      for (int kk = 0; kk < 16; ++kk) {
        _mm512_mask_storeu_ps(dst + (k + kk) * kRows, kSliverLanes, _mm512_castsi512_ps(r[kk]));
      }
    }
    for (; k < depth; ++k) {
      for (int i = 0; i < kRows; ++i) dst[k * kRows + i] = to_float(row0[i * src.row_stride + k]);
    }
  }
  if (full * kRows < rows) {
    const MatrixRef rest{src.at(full * kRows, 0), src.dtype, src.row_stride, src.col_stride};
    pack_a_generic<In, kRows>(rest, rows - full * kRows, depth, dst);
  }
}

// B with unit column stride (x @ w): each k row of a sliver is 32 contiguous
// elements. Rows are visited in bands across all slivers, not one sliver down
// all K rows (rows are N elements apart: a new page per row thrashes the TLB).
template <typename In>
void pack_b_rows(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  constexpr int64_t kBand = 32;
  const In* b = static_cast<const In*>(src.data);
  const int64_t full = cols / kCols;
  for (int64_t k0 = 0; k0 < depth; k0 += kBand) {
    const int64_t k1 = k0 + kBand < depth ? k0 + kBand : depth;
    for (int64_t s = 0; s < full; ++s) {
      float* sliver = dst + s * depth * kCols;
      for (int64_t k = k0; k < k1; ++k) {
        const In* row = b + k * src.row_stride + s * kCols;
        _mm512_storeu_ps(sliver + k * kCols, load16(row));
        _mm512_storeu_ps(sliver + k * kCols + 16, load16(row + 16));
      }
    }
  }
  if (full * kCols < cols) {
    const MatrixRef rest{src.at(0, full * kCols), src.dtype, src.row_stride, src.col_stride};
    pack_b_generic<In, kCols>(rest, depth, cols - full * kCols, dst + full * depth * kCols);
  }
}

// B with unit row stride (x @ w.t(), w row-major (N, K)): each of a sliver's
// 32 columns is contiguous in k; 16 x 16 blocks are transposed in registers.
template <typename In>
void pack_b_cols(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  const In* b = static_cast<const In*>(src.data);
  const int64_t full = cols / kCols;
  for (int64_t s = 0; s < full; ++s, dst += depth * kCols) {
    for (int64_t half = 0; half < kCols; half += 16) {
      const In* col0 = b + (s * kCols + half) * src.col_stride;
      int64_t k = 0;
      for (; k + 16 <= depth; k += 16) {
        __m512i r[16];
        for (int j = 0; j < 16; ++j) r[j] = _mm512_castps_si512(load16(col0 + j * src.col_stride + k));
        transpose16(r);  // r[kk] = row k + kk, columns half..half+15
        for (int kk = 0; kk < 16; ++kk) _mm512_storeu_ps(dst + (k + kk) * kCols + half, _mm512_castsi512_ps(r[kk]));
      }
      for (; k < depth; ++k) {
        for (int j = 0; j < 16; ++j) dst[k * kCols + half + j] = to_float(col0[j * src.col_stride + k]);
      }
    }
  }
  if (full * kCols < cols) {
    const MatrixRef rest{src.at(0, full * kCols), src.dtype, src.row_stride, src.col_stride};
    pack_b_generic<In, kCols>(rest, depth, cols - full * kCols, dst);
  }
}

template <typename In>
void pack_a_typed(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  if (src.col_stride == 1) {
    pack_a_rows<In>(src, rows, depth, dst);
  } else {
    pack_a_generic<In, kRows>(src, rows, depth, dst);
  }
}

template <typename In>
void pack_b_typed(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  if (src.col_stride == 1) {
    pack_b_rows<In>(src, depth, cols, dst);
  } else if (src.row_stride == 1) {
    pack_b_cols<In>(src, depth, cols, dst);
  } else {
    pack_b_generic<In, kCols>(src, depth, cols, dst);
  }
}

void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_a_typed, src, rows, depth, dst);
}

void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_b_typed, src, depth, cols, dst);
}

// ---------------------------------------------------------------- micro-kernel

// The accumulators are named variables, not an array: GCC keeps an array
// that is written on several paths in memory, spilling every FMA.
#define HETERO_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
// A's value (i, k) is a[i * a_row + k * a_k]: packed (1, kRows), or row-major
// (lda, 1) for micro_rows; the packed instance compiles to constant offsets.
template <bool kPackedA>
inline void micro_tile(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                       bool accumulate) {
  const int64_t a_row = kPackedA ? 1 : lda, a_k = kPackedA ? kRows : 1;
#define DECLARE(r) __m512 c##r##0, c##r##1;
  HETERO_ROWS(DECLARE)
#undef DECLARE
  int64_t k = 0;
  if (accumulate) {
#define LOAD(r) c##r##0 = _mm512_loadu_ps(c + r * ldc), c##r##1 = _mm512_loadu_ps(c + r * ldc + 16);
    HETERO_ROWS(LOAD)
#undef LOAD
  } else if (depth > 0) {  // seed with the first product: keeps -0 exact
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    __m512 ar;
#define SEED(r) ar = _mm512_set1_ps(a[r * a_row]), c##r##0 = _mm512_mul_ps(ar, b0), c##r##1 = _mm512_mul_ps(ar, b1);
    HETERO_ROWS(SEED)
#undef SEED
    k = 1;
  } else {
#define ZERO(r) c##r##0 = c##r##1 = _mm512_setzero_ps();
    HETERO_ROWS(ZERO)
#undef ZERO
  }
  const float* ak = a + k * a_k;
  const float* bk = b + k * kCols;
  for (; k < depth; ++k, ak += a_k, bk += kCols) {
    const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
    __m512 ar;
#define STEP(r) ar = _mm512_set1_ps(ak[r * a_row]), c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0), c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1);
    HETERO_ROWS(STEP)
#undef STEP
  }
#define STORE(r) _mm512_storeu_ps(c + r * ldc, c##r##0), _mm512_storeu_ps(c + r * ldc + 16, c##r##1);
  HETERO_ROWS(STORE)
#undef STORE
}
#undef HETERO_ROWS

void micro(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  micro_tile<true>(depth, a, 0, b, c, ldc, accumulate);
}

void micro_rows(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                bool accumulate) {
  micro_tile<false>(depth, a, lda, b, c, ldc, accumulate);
}

}  // namespace

const FloatGemm* avx512_fp32_gemm() {
  static const FloatGemm gemm{kRows, kCols, kFloatMC, kFloatKC, kFloatNC, kSmallMRows, pack_a, pack_b, micro, micro_rows};
  return &gemm;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX-512 path in this build

namespace hetero {
namespace cpu {
const FloatGemm* avx512_fp32_gemm() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
