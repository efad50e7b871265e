// The exact int8 GEMM of the CPU backend: c = a @ b in int32, on a kernel
// set's vpdpbusd micro-kernel (kernels.h Int8Gemm). Internal to backends/cpu.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace hetero {
namespace cpu {

// a (M x K) at a[i * ars + k * acs], b (K x N) at b[k * brs + j * bcs], int8
// bytes; c int32 with row stride ldc, room for round_up(M, g.mr) rows and
// round_up(N, g.nr) columns (the padding receives garbage). Threads split the
// columns. May throw std::bad_alloc before any thread starts.
void int8_gemm(const Int8Gemm& g, const uint8_t* a, int64_t ars, int64_t acs, const uint8_t* b,
               int64_t brs, int64_t bcs, int64_t M, int64_t N, int64_t K, int32_t* c,
               int64_t ldc, int threads);

}  // namespace cpu
}  // namespace hetero
