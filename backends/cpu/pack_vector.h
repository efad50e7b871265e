// The fp32 GEMM's packers (kernels.h FloatGemm layouts) on vectors, written
// once for any vector width and tile: each ISA file instantiates
// VectorPacking with its own Vec (in its anonymous namespace, so every
// instantiation stays inside the file compiled for that ISA). Layouts with no
// vector path, and the edges past whole slivers, go to pack_generic.h.
//
// Vec supplies W = Vec::kLanes float32 lanes in a register type Vec::Reg:
//   load(p)              W consecutive elements of any dtype, widened
//   zero()               a register of zeros
//   store(p, r)          W floats
//   store_first<n>(p, r) the first n lanes
//   transpose(r)         r[i] lane j -> r[j] lane i, for r[0..W)
#pragma once

#include "pack_generic.h"

namespace hetero {
namespace cpu {

template <class Vec, int64_t mr, int64_t nr>
struct VectorPacking {
  static constexpr int64_t W = Vec::kLanes;
  static_assert(mr <= W && nr % W == 0, "a sliver's rows fit a register, its columns whole ones");
  using Reg = typename Vec::Reg;

  // A with unit column stride (row-major activations): per sliver, W k's of
  // its mr rows are loaded as rows (the rest zero), transposed in registers,
  // and each column's mr values stored.
  template <typename In>
  static void a_rows(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
    const In* a = static_cast<const In*>(src.data);
    const int64_t full = rows / mr;
    for (int64_t s = 0; s < full; ++s, dst += depth * mr) {
      const In* row0 = a + s * mr * src.row_stride;
      int64_t k = 0;
      for (; k + W <= depth; k += W) {
        Reg r[W];
        for (int64_t i = 0; i < mr; ++i) r[i] = Vec::load(row0 + i * src.row_stride + k);
        for (int64_t i = mr; i < W; ++i) r[i] = Vec::zero();
        Vec::transpose(r);  // r[kk] = column k + kk, rows in lanes 0..mr-1
        for (int64_t kk = 0; kk < W; ++kk) Vec::template store_first<mr>(dst + (k + kk) * mr, r[kk]);
      }
      for (; k < depth; ++k) {
        for (int64_t i = 0; i < mr; ++i) dst[k * mr + i] = to_float(row0[i * src.row_stride + k]);
      }
    }
    if (full * mr < rows) {
      const MatrixRef rest{src.at(full * mr, 0), src.dtype, src.row_stride, src.col_stride};
      pack_a_generic<In, mr>(rest, rows - full * mr, depth, dst);
    }
  }

  // B with unit column stride (x @ w): each k row of a sliver is nr
  // contiguous elements. Rows are visited in bands across all slivers, not one
  // sliver down all K rows (rows are N elements apart: a new page per row
  // thrashes the TLB).
  template <typename In>
  static void b_rows(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
    constexpr int64_t kBand = 32;
    const In* b = static_cast<const In*>(src.data);
    const int64_t full = cols / nr;
    for (int64_t k0 = 0; k0 < depth; k0 += kBand) {
      const int64_t k1 = k0 + kBand < depth ? k0 + kBand : depth;
      for (int64_t s = 0; s < full; ++s) {
        float* sliver = dst + s * depth * nr;
        for (int64_t k = k0; k < k1; ++k) {
          const In* row = b + k * src.row_stride + s * nr;
          for (int64_t v = 0; v < nr; v += W) Vec::store(sliver + k * nr + v, Vec::load(row + v));
        }
      }
    }
    if (full * nr < cols) {
      const MatrixRef rest{src.at(0, full * nr), src.dtype, src.row_stride, src.col_stride};
      pack_b_generic<In, nr>(rest, depth, cols - full * nr, dst + full * depth * nr);
    }
  }

  // B with unit row stride (x @ w.t(), w row-major (N, K)): each of a
  // sliver's nr columns is contiguous in k; W x W blocks are transposed in
  // registers.
  template <typename In>
  static void b_cols(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
    const In* b = static_cast<const In*>(src.data);
    const int64_t full = cols / nr;
    for (int64_t s = 0; s < full; ++s, dst += depth * nr) {
      for (int64_t part = 0; part < nr; part += W) {
        const In* col0 = b + (s * nr + part) * src.col_stride;
        int64_t k = 0;
        for (; k + W <= depth; k += W) {
          Reg r[W];
          for (int64_t j = 0; j < W; ++j) r[j] = Vec::load(col0 + j * src.col_stride + k);
          Vec::transpose(r);  // r[kk] = row k + kk, columns part..part+W-1
          for (int64_t kk = 0; kk < W; ++kk) Vec::store(dst + (k + kk) * nr + part, r[kk]);
        }
        for (; k < depth; ++k) {
          for (int64_t j = 0; j < W; ++j) dst[k * nr + part + j] = to_float(col0[j * src.col_stride + k]);
        }
      }
    }
    if (full * nr < cols) {
      const MatrixRef rest{src.at(0, full * nr), src.dtype, src.row_stride, src.col_stride};
      pack_b_generic<In, nr>(rest, depth, cols - full * nr, dst);
    }
  }

  template <typename In>
  static void a_typed(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
    if (src.col_stride == 1) return a_rows<In>(src, rows, depth, dst);
    pack_a_generic<In, mr>(src, rows, depth, dst);
  }

  template <typename In>
  static void b_typed(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
    if (src.col_stride == 1) return b_rows<In>(src, depth, cols, dst);
    if (src.row_stride == 1) return b_cols<In>(src, depth, cols, dst);
    pack_b_generic<In, nr>(src, depth, cols, dst);
  }

  // FloatGemm::pack_a and pack_b.
  static void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
    HETERO_PACK_BY_DTYPE(a_typed, src, rows, depth, dst);
  }
  static void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
    HETERO_PACK_BY_DTYPE(b_typed, src, depth, cols, dst);
  }
};

}  // namespace cpu
}  // namespace hetero
