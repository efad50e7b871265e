// The ISA-specific pieces of the CPU kernels: for GEMM (and the matrix
// products inside attention) operand packing and the register-blocked
// micro-kernel, in the layout of BLIS (Van Zee & van de Geijn, "BLIS:
// A Framework for Rapidly Instantiating BLAS Functionality", TOMS 2015).
// For decode-shaped GEMMs (a few rows of A), products read straight from B's
// storage. For attention, the two vector loops of an online softmax.
//
// Packed A ("Ap"): row slivers of mr rows; within a sliver, for each k, the
// mr values of column k. Packed B ("Bp"): column slivers of nr columns;
// within a sliver, for each k, the nr values of row k. Both are float32
// whatever the source dtype (bf16/fp16 are widened while packing, so they run
// at fp32 FMA speed) and zero-padded to whole slivers, so the micro-kernel
// never sees an edge. Each kernel set's FloatGemm names its tile (mr x nr).
#pragma once

#include <cstdint>

#include "hetero/dtype.h"

namespace hetero {
namespace cpu {

// The portable and avx2 sets' tile: 6 x 16 floats = 12 AVX2 accumulators,
// plus 2 B vectors and 1 broadcast A value: 15 of the 16 ymm registers.
constexpr int64_t kMR = 6;
constexpr int64_t kNR = 16;
// Their blocks: MC x KC floats of Ap (144 KiB) sit in a 512 KiB L2 next to Bp
// slivers; a KC x NR Bp sliver (16 KiB) stays in a 32 KiB L1 while MC / MR
// tiles use it. NC bounds the accumulator workspace and how often Ap is
// repacked (N / NC).
constexpr int64_t kFloatMC = 144, kFloatKC = 256, kFloatNC = 512;
// Up to this many rows, the small-M products beat this tile (measured on an
// AVX2 Zen 1, bench/RESULTS.md).
constexpr int64_t kFloatSmallMRows = 48;
static_assert(kFloatMC % kMR == 0 && kFloatNC % kNR == 0, "blocks must be whole slivers");

// A strided 2-D source of any supported dtype; strides in elements.
struct MatrixRef {
  const void* data;
  DType dtype;
  int64_t row_stride;
  int64_t col_stride;

  const void* at(int64_t i, int64_t j) const {
    return static_cast<const char*>(data) + (i * row_stride + j * col_stride) * element_size(dtype);
  }
};

// The fp32 GEMM of a kernel set, driven by the BLIS loop nest of gemm.cpp
// (and the matrix products of attention): the packers, in the layouts above
// for its tile, and the micro-kernel. Every tile sums each element of C over
// k in order, one fused multiply-add at a time, so the sets agree bit for bit
// where the blocks (kc) agree.
struct FloatGemm {
  int64_t mr, nr;      // the micro-tile of C
  int64_t mc, kc, nc;  // blocks: mc a multiple of mr, nc of nr
  // Calls of at most this many rows of A run faster on the set's
  // decode-shaped products (gemm_small_m.cpp) than on this tile (measured).
  int64_t small_m_rows;
  // Packs src[0:rows, 0:depth] into ceil(rows / mr) slivers at dst.
  void (*pack_a)(const MatrixRef& src, int64_t rows, int64_t depth, float* dst);
  // Packs src[0:depth, 0:cols] into ceil(cols / nr) slivers at dst.
  void (*pack_b)(const MatrixRef& src, int64_t depth, int64_t cols, float* dst);
  // c[mr x nr] (row stride ldc) = (accumulate ? c : 0) + a_sliver . b_sliver,
  // summing depth products in order. With accumulate false and depth 0, c = 0.
  void (*micro)(int64_t depth, const float* a, const float* b, float* c, int64_t ldc,
                bool accumulate);
  // The same with mr rows of A read in place, row-major: A(i, k) = a[i * lda
  // + k]. For a freshly computed A (attention's P) that would be packed only
  // to be read once per B sliver.
  void (*micro_rows)(int64_t depth, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                     bool accumulate);
};

// A GEMM on bf16 inputs that multiplies them in bf16 pairs (vdpbf16ps:
// c += a[k] b[k] + a[k+1] b[k+1] in fp32), with its own packed layouts and
// tile, driven by the BLIS loop nest of gemm.cpp like the fp32 micro-kernel.
// Packed A: row slivers of mr rows; within a sliver, for each pair of k, the
// mr 32-bit words (a[i][k], a[i][k+1]). Packed B: column slivers of nr
// columns; for each pair of k, the nr words (b[k][j], b[k+1][j]). Depth is
// rounded up to a multiple of k_align with zeros, rows and columns to whole
// slivers. The AMX GEMM (kernels_amx_gemm.cpp) packs A its own way, as tiles.
struct DotGemm {
  int64_t mr, nr;      // the micro-tile of C
  int64_t mc, kc, nc;  // blocks: mc a multiple of mr, kc of k_align, nc of nr
  int64_t k_align;     // packed depth is a multiple of this (2: pairs; AMX: 32)
  void (*pack_a)(const MatrixRef& src, int64_t rows, int64_t depth, uint16_t* dst);
  void (*pack_b)(const MatrixRef& src, int64_t depth, int64_t cols, uint16_t* dst);
  // c[mr x nr] (row stride ldc) = (accumulate ? c : 0) + a_sliver . b_sliver
  // over `depth` (a multiple of k_align) values of k.
  void (*micro)(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                bool accumulate);
  // Called on a thread before its micro calls of a block, nullptr if none is
  // needed (AMX: loading the tile configuration once, not per micro call).
  void (*begin)() = nullptr;
};

// x @ w.t() for bf16 x of a few rows on AMX tiles, reading w where it lies,
// once (gemm_weight_stream.cpp drives it): w is a Linear weight, row j of w
// being column j of b with k contiguous. The roles of the tile product swap
// so that w needs no packing: 16 rows of w load straight from memory as the
// A tile, and x, packed once per call as pairs of k, is the B tile.
struct WeightStream {
  int64_t min_rows, max_rows;  // rows of x it serves
  int64_t k_align;   // depth: a multiple of this
  int64_t cols;      // columns (rows of w) per call
  // x(i, k) = x[i * rs + k * cs] for i < rows, k < depth into dst, per
  // block of 32 rows: for each pair of k, the 32 words (x[i][k], x[i][k+1]),
  // rows past `rows` zero. dst holds ceil(rows / 32) * 32 * depth values.
  void (*pack_x)(const uint16_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth,
                 uint16_t* dst);
  // c[i * ldc + j] = sum over k of x[i][k] * w[j * ldw + k] in fp32, for
  // i < rows, j < cols (every one of those rows of w must exist).
  void (*multiply)(const uint16_t* xp, int64_t rows, int64_t depth, const uint16_t* w, int64_t ldw,
                   float* c, int64_t ldc);
};

// WeightStream::pack_x of both bf16 weight streams (avx512, amx): x packed as
// the bf16 attention's B slivers of x^T (kernels_avx512_bf16_stream.cpp; x86-64
// builds only, run where the CPU has AVX512_BF16).
void pack_bf16_stream_x(const uint16_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth,
                        uint16_t* dst);

// Flash attention's two products in bf16 pairs (attention_forward.cpp), in
// DotGemm's packed layouts with a tile of kDotAttentionMR x kDotAttentionNR
// (head dimensions 64 and 128 are whole slivers): S = Q K^T over d, and
// O += P V over keys, P rounded to bf16 as flash attention does on GPUs.
constexpr int64_t kDotAttentionMR = 8;
constexpr int64_t kDotAttentionNR = 32;
struct DotAttention {
  // bf16 src[0:rows, 0:depth] into row slivers.
  void (*pack_a)(const MatrixRef& src, int64_t rows, int64_t depth, uint16_t* dst);
  // The same from float32 rows src[i * ld + k], rounded to bf16 (to nearest even).
  void (*pack_a_f32)(const float* src, int64_t ld, int64_t rows, int64_t depth, uint16_t* dst);
  // bf16 src[0:depth, 0:cols] into column slivers.
  void (*pack_b)(const MatrixRef& src, int64_t depth, int64_t cols, uint16_t* dst);
  // As DotGemm::micro, for the tile above.
  void (*micro)(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                bool accumulate);
  // As DotGemm::begin.
  void (*begin)() = nullptr;
  // Row r of P for a row sliver at dst (as pack_a_f32 lays out a sliver's
  // rows), fused with the softmax: bf16(2^(x[j] * a - shift)) for j < n, 0
  // for n <= j < padded (a whole number of depth steps); returns the sum of
  // the unrounded values, added as exp2_sum adds them, and in *x_max the
  // largest x[j] (a NaN may not show there). Right where x[j] * a - shift <=
  // 127. nullptr: the caller runs exp2_sum and pack_a_f32.
  float (*softmax_pack_row)(const float* x, int64_t n, int64_t padded, float a, float shift, int64_t r,
                            uint16_t* dst, float* x_max) = nullptr;
};
// The same four on AMX tiles (kernels_amx_gemm.cpp), in the AMX DotGemm's
// layouts and 32 x 32 tile, depth padded to kTileAttentionK.
constexpr int64_t kTileAttentionMR = 32;
constexpr int64_t kTileAttentionNR = 32;
constexpr int64_t kTileAttentionK = 32;

// Scaled GEMMs on byte-coded inputs (float8, int8; csrc/hetero/quantized.h):
// every value is exact in bf16, so they are decoded through a 256-entry table
// of bf16 codes and multiplied as bf16 (the avx2 stream decodes by arithmetic
// into float32 instead: kernels_avx2_quantized.cpp).
//
// Decode-shaped products (a few rows of a) stream the byte-coded weight once:
// column j of b is row j of w (b = w.t(), the layout of a Linear weight),
// w[j * ldw + k]. For each output, the fp32 sum runs over `block` values of k
// at a time (a multiple of 64; 0: all of K) and each block's sum is folded
// into the total: times scale_a(i, kb) * scale_b(kb, j / 128) where scale_a
// is given (the block recipe, block = 128), converted to int32 and added where
// exact_int (int8: a block of 512 sums stays below 2^24, so it is exact), else
// added. c is rows x cols of float32 totals, or int32 ones with exact_int.
struct QuantizedSmallM {
  const uint8_t* a;
  int64_t lda;  // a: rows x depth bytes, unit k stride
  const uint8_t* w;
  int64_t ldw;
  int64_t rows, depth, block;
  DType dtype;            // of a and w
  const uint16_t* table;  // the dtype's 256 bf16 codes
  const float* scale_a;   // null: no block scales
  int64_t sa_rows, sa_cols;  // strides of scale_a (rows x K/128)
  const float* scale_b;
  int64_t sb_rows, sb_cols;  // strides of scale_b (K/128 x ceil(N/128))
  bool exact_int;
  void* c;
  int64_t ldc;
};

// Exact int8 GEMMs with vpdpbusd (u8 x s8, four products per int32 lane):
// a goes in as a + 128 (unsigned) and 128 times each column's sum of b comes
// off afterwards. Packed A ("Ap"): row slivers of mr rows; within a sliver,
// for each quad of k, the mr 4-byte words (a[i][k..k+3] + 128). Packed B
// ("Bp"): column slivers of nr columns; for each quad of k, the nr words
// b[k..k+3][j]. Depth is padded to whole quads (a with 128, b with 0), rows
// and columns to whole slivers (zeros).
struct Int8Gemm {
  int64_t mr, nr;
  // src(i, k) = src[i * rs + k * cs] for i < rows, k < depth, into slivers.
  void (*pack_a)(const uint8_t* src, int64_t rs, int64_t cs, int64_t rows, int64_t depth,
                 uint8_t* dst);
  // src(k, j) = src[k * rs + j * cs] for k < depth, j < cols, into slivers;
  // colsum[j] += the sum over k of column j (for every padded column too).
  void (*pack_b)(const uint8_t* src, int64_t rs, int64_t cs, int64_t depth, int64_t cols,
                 uint8_t* dst, int32_t* colsum);
  // c[mr x nr] (row stride ldc) = (accumulate ? c : 0) + a_sliver . b_sliver
  // over `quads` quads of k.
  void (*micro)(int64_t quads, const uint8_t* a, const uint8_t* b, int32_t* c, int64_t ldc,
                bool accumulate);
};

// Exact int8 x @ w.t() reading w where it lies, as WeightStream does for
// bf16: on AMX-INT8 tiles (kernels_amx_int8.cpp, tdpbssd on signed bytes, 64
// values of k per tile row) or on vpdpbusd (kernels_avx512_int8_stream.cpp).
struct Int8Stream {
  int64_t min_rows, max_rows;  // rows of x it serves
  int64_t k_align;             // depth: a multiple of this
  int64_t cols;                // columns (rows of w) per call
  // x(i, k) = x[i * rs + k * cs] for i < rows, k < depth into dst, per block
  // of 32 rows: for each quad of k, the 32 4-byte words x[i][k..k+3] (AMX:
  // rows past `rows` zero; vpdpbusd: every byte + 128, as unsigned). dst
  // holds ceil(rows / 32) * 32 * depth bytes, read only by multiply.
  void (*pack_x)(const uint8_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth, uint8_t* dst);
  // c[i * ldc + j] = sum over k of x[i][k] * w[j * ldw + k] (int8 values,
  // exact in int32) for i < rows, j < cols (those rows of w must exist).
  void (*multiply)(const uint8_t* xp, int64_t rows, int64_t depth, const uint8_t* w, int64_t ldw,
                   int32_t* c, int64_t ldc);
};

struct QuantizedKernels {
  // dst[i * ld_dst + k] = table[src[i * ld_src + k]] for i < rows, k < cols.
  void (*decode_rows)(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols,
                      const uint16_t* table, uint16_t* dst, int64_t ld_dst);
  // Columns [col0, col1) of a QuantizedSmallM product (rows <= kQuantizedRows);
  // nullptr where the set has none: callers decode and run the bf16 GEMM.
  void (*small_m)(const QuantizedSmallM& p, int64_t col0, int64_t col1);
  // Exact int8 GEMMs; nullptr: int8 is decoded to bf16 like float8.
  const Int8Gemm* int8_gemm;
  // Exact int8 x @ w.t() streaming w (AMX tiles in the amx set, vpdpbusd in
  // the avx512 set); nullptr in the others.
  const Int8Stream* int8_stream = nullptr;
  // Rows of a up to which small_m runs (it reads w once per kQuantizedRows
  // rows; beyond, decoding w once and multiplying is faster).
  int64_t small_m_max_rows = 16;
};
constexpr int64_t kQuantizedRows = 4;

// 2^f for f in [-0.5, 0.5]: the polynomial every vector exp2 of the kernel
// sets evaluates (highest power first, Horner), so they agree bit for bit.
constexpr float kExp2Poly[6] = {1.327645520e-3f, 9.675535917e-3f, 5.550713273e-2f,
                                2.402211982e-1f, 6.931469671e-1f, 1.000000072f};

// Paged attention rows: query rows of one sequence over keys [j0, j1) of a
// paged cache, for `heads` consecutive key/value heads (heads x rows rows,
// head-major); row r of every head sees keys [lo[r], hi[r]). Leaves what
// attention_paged.cpp's generic path does for each row: o (heads * rows x
// Dv, unnormalised), m (log2 units) and l. No softcap. Two kernels take them:
//   AMX tiles (kernels_amx_attention.cpp): bf16, one head, up to 16 rows, head
//     dim a multiple of 32 (at most 512), value dim a multiple of 16, blocks
//     of a multiple of 16 keys; j0 a multiple of 16.
//   AVX-512 vectors (kernels_avx512_paged.cpp): float32, float16 or bf16, up
//     to kPagedVectorRows rows and kPagedVectorHeads heads, head and value
//     dims multiples of 32 (at most 512), any block size. Several heads per
//     call read each key's row of the cache as one run of memory.
constexpr int kPagedVectorRows = 8;
constexpr int kPagedVectorHeads = 16;
struct PagedRows {
  DType dtype;            // of q and the caches
  const void* q[16];      // each row's D elements for the first head, contiguous
  int64_t q_head;         // elements from a row of one head to the same row of the next
  int rows, heads;
  int64_t D, Dv;
  float q_scale;  // scale * log2(e)
  int64_t lo[16], hi[16];
  int64_t j0, j1;
  const void *k_cache, *v_cache;  // at the first key/value head
  int64_t k_block, k_row, k_head, v_block, v_row, v_head;  // strides in elements
  const int32_t* table;  // this sequence's row of the block table
  int64_t table_stride, block_size;
  float* scratch;  // heads * rows * D floats the kernel may use

  int64_t key_row_bytes() const { return k_row * static_cast<int64_t>(element_size(dtype)); }
  template <class T>
  const T* key(int64_t j) const {
    return static_cast<const T*>(k_cache) + table[(j / block_size) * table_stride] * k_block + (j % block_size) * k_row;
  }
  template <class T>
  const T* value(int64_t j) const {
    return static_cast<const T*>(v_cache) + table[(j / block_size) * table_stride] * v_block + (j % block_size) * v_row;
  }
};
using PagedRowsFn = void (*)(const PagedRows& rows, float* o, float* m, float* l);

struct KernelSet {
  const char* isa;
  // GEMMs in float32 (and bf16/fp16 widened while packing).
  const FloatGemm* fp32_gemm;
  // dst[i * ld + k] = float(src(i, k)) for i < rows, k < depth: rows of a
  // dtype widened to float32 (vector loads where src.col_stride == 1).
  void (*widen_rows)(const MatrixRef& src, int64_t rows, int64_t depth, float* dst, int64_t ld);
  // dst[i * ld + j] = dtype(alpha * c[i * ldc + j]) for i < rows, j < cols: the
  // GEMM epilogue of an output with unit column stride and no bias, rounded
  // to nearest even exactly as from_float rounds (dtype float32/fp16/bf16).
  void (*store_rows)(const float* c, int64_t ldc, int64_t rows, int64_t cols, float alpha,
                     void* dst, DType dtype, int64_t ld);
  // Products for a few rows of A (decode) read straight from b[0:depth,
  // 0:cols], unpacked. a: rows x depth float32, unit k stride, row stride
  // lda. c: rows x cols float32, row stride ldc; c = a . b, or c += a . b with
  // accumulate (the block's sum is added to c last). Every element is summed
  // the same way whichever tile computes it, so results do not depend on how
  // callers split columns.
  //   small_m_dot: b.row_stride == 1 (x @ w.t(): each column of b is a
  //     contiguous row of w); k is summed in 8 interleaved partial sums. a
  //     must be in the order order_dot_rows gives it for b's dtype.
  //   small_m_axpy: b.col_stride == 1 (x @ w: rows of b are contiguous); k is
  //     summed in order.
  void (*small_m_dot)(const MatrixRef& b, int64_t depth, int64_t cols, const float* a,
                      int64_t lda, int64_t rows, float* c, int64_t ldc, bool accumulate);
  void (*small_m_axpy)(const MatrixRef& b, int64_t depth, int64_t cols, const float* a,
                       int64_t lda, int64_t rows, float* c, int64_t ldc, bool accumulate);
  // Reorders rows of a (float32, rows x depth, row stride lda) in place into
  // the order small_m_dot pairs with a b of dtype b_dtype. A no-op except
  // where a kernel set widens that dtype in a permuted order; call it once
  // per block of a, before the small_m_dot calls that use the block.
  void (*order_dot_rows)(float* a, int64_t rows, int64_t depth, int64_t lda, DType b_dtype);
  // Largest of x[0:n]; NaN if any x is NaN; -inf when n == 0 or every x is -inf.
  float (*row_max)(const float* x, int64_t n);
  // x[j] = 2^(x[j] - shift) for j < n; returns their sum. Exactly 0 where
  // x[j] - shift <= -127 (masked scores are -inf), a subnormal or 0 up to
  // -126; NaN stays NaN.
  float (*exp2_sum)(float* x, int64_t n, float shift);
  // x[j] *= a for j < n (the score scale, the online softmax's rescale of O).
  void (*scale)(float* x, int64_t n, float a);
  // Runs `iterations` rounds of independent multiply-adds at the best rate
  // this kernel set reaches; returns the flops done. For measuring the peak.
  int64_t (*fma_loop)(int64_t iterations);
  // The same with bf16 pair dot products (vdpbf16ps), the instruction bf16
  // GEMMs can run on; nullptr where the CPU or the set has none.
  int64_t (*bf16_dot_loop)(int64_t iterations);
  // GEMMs whose inputs are both bf16; nullptr: they are widened to fp32.
  const DotGemm* bf16_gemm;
  // Attention forward on bf16 q, k, v; nullptr: they are widened to fp32.
  const DotAttention* bf16_attention;
  // Byte-coded inputs of scaled GEMMs; never null (the portable decode).
  const QuantizedKernels* quantized;
  // Paged attention rows (PagedRows): on AMX tiles, nullptr outside the amx
  // set; on AVX-512 vectors, nullptr below the avx512 set.
  PagedRowsFn amx_paged_rows = nullptr;
  PagedRowsFn vector_paged_rows = nullptr;
  // bf16 x @ w.t() streaming w (vdpbf16ps in the avx512 set
  // where the CPU has AVX512_BF16, AMX tiles in the amx set), and attention
  // forward on bf16 in AMX tiles (used instead of bf16_attention; nullptr
  // outside the amx set).
  const WeightStream* weight_stream = nullptr;
  const DotAttention* tile_attention = nullptr;
};

// Scalar C++ that any compiler and CPU runs (and that auto-vectorises).
const KernelSet& portable_kernels();
// The getters below live in files compiled for their ISA: building a set may
// itself run that ISA's instructions (a struct copy in zmm registers), so call
// one only after the CPU is known to have the ISA (kernels_select.cpp).
// AVX2 + FMA + F16C; nullptr when this build has no x86 path.
const KernelSet* avx2_kernels();
// AVX-512 (F, BW, VL, DQ) with AVX512_BF16 where the CPU has it; nullptr when
// this build has no x86 path.
const KernelSet* avx512_kernels();
// The avx512 set with bf16 GEMMs, flash attention and paged attention on AMX
// tiles; nullptr where this build, the CPU or the OS has no AMX-BF16.
const KernelSet* amx_kernels();
// The avx512 set's fp32 GEMM (kernels_avx512_fp32.cpp: a 12 x 32 tile in
// zmm registers); nullptr when this build has no x86 path.
const FloatGemm* avx512_fp32_gemm();
// The vdpbf16ps GEMM and attention products of the avx512 set
// (kernels_avx512_bf16.cpp); nullptr when this build has no x86 path. Callers
// check the CPU has AVX512_BF16.
const DotGemm* avx512_bf16_gemm();
const DotAttention* avx512_bf16_attention();
// Its weight-streaming product (kernels_avx512_bf16_stream.cpp: 20-512 rows);
// nullptr when this build has no x86 path. Callers check AVX512_BF16.
const WeightStream* avx512_bf16_weight_stream();
// The table decode and the streaming decode-shaped product of the avx512 set
// (kernels_avx512_quantized.cpp: vpermi2b + vdpbf16ps, vpdpbusd for int8);
// nullptr when this build has no x86 path. Callers check AVX512_BF16,
// AVX512_VBMI and AVX512_VNNI.
const QuantizedKernels* avx512_quantized_kernels();
// The vpdpbusd int8 GEMM of the avx512 set (kernels_avx512_int8.cpp);
// nullptr when this build has no x86 path.
const Int8Gemm* avx512_int8_gemm();
// Its int8 weight stream (kernels_avx512_int8_stream.cpp: 20-512 rows);
// nullptr when this build has no x86 path. Callers check AVX512_VNNI.
const Int8Stream* avx512_int8_stream();
// The portable table decode, with no small-M product.
const QuantizedKernels* portable_quantized_kernels();
// The portable decode with the avx2 set's streaming product
// (kernels_avx2_quantized.cpp: float8 widened through binary16, int8 by
// vpmaddwd); defined in x86-64 builds only, for kernels_avx2.cpp.
const QuantizedKernels* avx2_quantized_kernels();

// The AMX bf16 GEMM (kernels_amx_gemm.cpp); nullptr when this build, the CPU
// or the OS has no AMX-BF16.
const DotGemm* amx_bf16_gemm();
// Its weight-streaming product for a few rows and its attention products
// (kernels_amx_gemm.cpp); nullptr where amx_bf16_gemm() is.
const WeightStream* amx_weight_stream();
const DotAttention* amx_attention();
// The AMX-INT8 stream (kernels_amx_int8.cpp); nullptr without AMX-INT8.
const Int8Stream* amx_int8_stream();
// The AMX paged attention rows (kernels_amx_attention.cpp); nullptr when
// this build has no AMX. Callers check amx_peak.h's amx_bf16_available().
PagedRowsFn amx_paged_rows_kernel();
// The AVX-512 paged attention rows (kernels_avx512_paged.cpp); bf16 by
// vdpbf16ps where pair_dot (the CPU has AVX512_BF16), else widened to float32;
// nullptr when this build has no x86 path.
PagedRowsFn avx512_paged_rows_kernel(bool pair_dot);

// The kernels used now: the best this CPU supports unless overridden.
const KernelSet& active_kernels();
// Selects "auto", "amx", "avx512", "avx2" or "portable"; returns false (changing
// nothing) for a name this build or CPU cannot run.
bool select_kernels(const char* isa);
// The kernel sets this build and CPU run, best last, separated by commas.
const char* available_kernels();

}  // namespace cpu
}  // namespace hetero
