// The avx512 set's WeightStream (kernels.h) on vdpbf16ps: bf16 x @ w.t()
// reading the Linear weight w where it lies, once, with no packing of w
// (gemm_weight_stream.cpp drives it). Compiled with the flags of
// kernels_avx512.cpp; used only where the CPU has AVX512_BF16.
//
// The BLIS nest (gemm.cpp) packs every value of w into pair slivers before
// multiplying. With tens to hundreds of rows of x that packing, and the wait
// for w's bytes inside it, is a large share of the call. Here avx512_stream.h's
// loop multiplies, in steps of a pair of k: x packed once per call as pairs
// (the attention B slivers, 32 rows each) against each 32-bit word
// (w[j][k], w[j][k+1]) of a w row, broadcast straight from memory.
//
// Rounding: as kernels_avx512_bf16.cpp (products exact in fp32, one fp32
// rounding per pair of k).

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include "avx512_stream.h"

namespace hetero {
namespace cpu {
namespace {

// Rows of x it serves: from 20 (below, gemm_small_m.cpp's dot product,
// which packs nothing, is as fast: a 12 x 16 tile is bound by its loads) to
// 512 (beyond, x no longer stays in L3 at long depths, and it is re-read for
// every group of 12 rows of w: the BLIS nest, which reads each value of x
// once per panel of w, takes over).
constexpr int64_t kMinRows = 20, kMaxRows = 512;
static_assert(kDotAttentionNR == avx512::kSliverRows, "x packs as the attention B slivers");

struct PairDot {  // avx512_stream.h's Dot
  using Acc = __m512;
  using Sum = float;
  static Acc zero() { return _mm512_setzero_ps(); }
  static Acc dot(Acc acc, __m512i x, __m512i w) { return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x); }
  static void store(Sum* t, Acc acc) { _mm512_storeu_ps(t, acc); }
};

// c[i * ldc + j] for i < rows, j < avx512::kStreamCols (WeightStream::multiply).
void multiply(const uint16_t* xp, int64_t rows, int64_t depth, const uint16_t* w, int64_t ldw,
              float* c, int64_t ldc) {
  constexpr int64_t E = sizeof(uint16_t);
  avx512::stream_rows<PairDot>(reinterpret_cast<const uint8_t*>(xp), rows, depth * E,
                               reinterpret_cast<const uint8_t*>(w), ldw * E, c, ldc);
}

}  // namespace

void pack_bf16_stream_x(const uint16_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth,
                        uint16_t* dst) {
  avx512_bf16_attention()->pack_b({x, DType::bfloat16, cs, rs}, depth, rows, dst);
}

const WeightStream* avx512_bf16_weight_stream() {
  static const WeightStream stream{kMinRows, kMaxRows, 2, avx512::kStreamCols, pack_bf16_stream_x,
                                   multiply};
  return &stream;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const WeightStream* avx512_bf16_weight_stream() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
