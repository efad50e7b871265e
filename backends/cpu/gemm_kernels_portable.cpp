// The portable GEMM kernels: plain loops over the packed layouts, with the
// accumulator tile in a local array the compiler can keep in vector registers
// on any target (SSE2, NEON, ...). Compiled with -ffp-contract=off, so results
// are the same on every compiler and CPU.

#include "gemm_kernels.h"
#include "gemm_pack.h"

namespace hetero {
namespace cpu {
namespace {

void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_a_generic, src, rows, depth, dst);
}

void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  HETERO_PACK_BY_DTYPE(pack_b_generic, src, depth, cols, dst);
}

void micro(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  float acc[kMR][kNR];
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) acc[r][j] = accumulate ? c[r * ldc + j] : 0.0f;
  }
  int64_t k = 0;
  if (!accumulate && depth > 0) {  // seed with the first product: keeps -0 exact
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] = a[r] * b[j];
    }
    k = 1;
  }
  for (; k < depth; ++k) {
    const float* ak = a + k * kMR;
    const float* bk = b + k * kNR;
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] += ak[r] * bk[j];
    }
  }
  for (int64_t r = 0; r < kMR; ++r) {
    for (int64_t j = 0; j < kNR; ++j) c[r * ldc + j] = acc[r][j];
  }
}

}  // namespace

const GemmKernels& portable_kernels() {
  static const GemmKernels kernels{"portable", pack_a, pack_b, micro};
  return kernels;
}

}  // namespace cpu
}  // namespace hetero
