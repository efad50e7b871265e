// AVX-512 kernels (F, BW, VL, DQ; AVX512_BF16 where the CPU has it). This file
// alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16
// -mfma -mf16c; nothing here runs unless the CPU reports those features
// (kernels_select.cpp), so the module still loads on older CPUs.
//
// The set starts from the AVX2 set (its decode-shaped products, the widening
// and storing loops) and adds what only AVX-512 has: the fp32 GEMM on a
// 12 x 32 tile of zmm registers (kernels_avx512_fp32.cpp), 512-bit softmax
// and peak loops, and the bf16 pair dot product, vdpbf16ps, which multiplies
// bf16 at twice the fp32 FMA rate.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "avx512_vectors.h"

namespace hetero {
namespace cpu {
namespace {

bool cpu_has_avx512_bf16() {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool cpu_has_avx512_vbmi_vnni() {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// Hands lane 0 of the accumulators' sum (which depends on every chain) to a
// volatile, so the loop that made it is not optimised away. (Through memory:
// GCC 12 at -O2 warns inside _mm512_reduce_add_ps and _mm512_castps512_ps128
// about their own undefined upper halves.)
void keep_alive(__m512 sum) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
}

// 12 independent chains: latency (4-6 cycles) x two issue ports, with room.
int64_t fma_loop(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
  keep_alive(sum);
  return iterations * 12 * 16 * 2;
}

// Each vdpbf16ps: 16 lanes x a pair of bf16 products added to fp32 = 64 flops.
int64_t bf16_dot_loop(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3F80);  // bf16 1.0
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 ~6e-8
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
  keep_alive(sum);
  return iterations * 12 * 16 * 4;
}

// ---------------------------------------------------------------- softmax
// The avx2 set's row_max, exp2_sum and scale at 512 bits (the same exp2
// polynomial, so exp2 values agree bit for bit; sums are added in 16 lanes).

float row_max(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-__builtin_inff());
  __mmask16 nan = 0;  // maxps drops a NaN in its first operand: tracked on the side
  int64_t j = 0;
  for (; j < n; j += 16) {
    const __mmask16 keep = n - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), keep, x + j);
    m = _mm512_max_ps(m, v);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  return nan ? __builtin_nanf("") : _mm512_reduce_max_ps(m);
}

float exp2_sum(float* x, int64_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 keep = n - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 t = _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), keep, x + j);
    const __m512 e = avx512::exp2_nonpositive(_mm512_sub_ps(t, s));
    _mm512_mask_storeu_ps(x + j, keep, e);
    sum = _mm512_add_ps(sum, e);  // lanes past n hold 2^-inf = 0
  }
  return _mm512_reduce_add_ps(sum);
}

void scale(float* x, int64_t n, float a) {
  const __m512 f = _mm512_set1_ps(a);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 keep = n - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1);
    _mm512_mask_storeu_ps(x + j, keep, _mm512_mul_ps(_mm512_maskz_loadu_ps(keep, x + j), f));
  }
}

}  // namespace

const KernelSet* avx512_kernels() {
  const KernelSet* avx2 = avx2_kernels();
  static const KernelSet kernels = [avx2] {
    KernelSet k = *avx2;
    k.isa = "avx512";
    k.fp32_gemm = avx512_fp32_gemm();
    k.fma_loop = fma_loop;
    k.row_max = row_max;
    k.exp2_sum = exp2_sum;
    k.scale = scale;
    const bool bf16 = cpu_has_avx512_bf16();
    k.bf16_dot_loop = bf16 ? bf16_dot_loop : nullptr;
    k.bf16_gemm = bf16 ? avx512_bf16_gemm() : nullptr;
    k.bf16_attention = bf16 ? avx512_bf16_attention() : nullptr;
    k.weight_stream = bf16 ? avx512_bf16_weight_stream() : nullptr;
    if (bf16 && cpu_has_avx512_vbmi_vnni()) {
      static QuantizedKernels quantized = *avx512_quantized_kernels();
      quantized.int8_stream = avx512_int8_stream();
      k.quantized = &quantized;
    }
    k.vector_paged_rows = avx512_paged_rows_kernel(bf16);
    return k;
  }();
  return &kernels;
}

const KernelSet* amx_kernels() {
  const KernelSet* avx512 = avx512_kernels();
  if (avx512 == nullptr || avx512->bf16_gemm == nullptr || amx_bf16_gemm() == nullptr) return nullptr;
  static const KernelSet kernels = [avx512] {
    KernelSet k = *avx512;
    k.isa = "amx";
    k.bf16_gemm = amx_bf16_gemm();
    k.amx_paged_rows = amx_paged_rows_kernel();
    k.weight_stream = amx_weight_stream();
    k.tile_attention = amx_attention();
    static QuantizedKernels quantized = *avx512->quantized;
    if (const Int8Stream* tiles = amx_int8_stream()) quantized.int8_stream = tiles;
    k.quantized = &quantized;
    return k;
  }();
  return &kernels;
}

}  // namespace cpu
}  // namespace hetero

#else  // not x86-64: no AVX-512 path in this build

namespace hetero {
namespace cpu {
const KernelSet* avx512_kernels() { return nullptr; }
const KernelSet* amx_kernels() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
