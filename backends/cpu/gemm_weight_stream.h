// The weight-streaming GEMM driver (gemm_weight_stream.cpp): bf16 (or
// byte-coded, decoded) x @ w.t() within its rows on the kernel set's
// WeightStream (AMX tiles, or vdpbf16ps in the avx512 set).
#pragma once

#include "gemm_problem.h"
#include "hetero/status.h"

namespace hetero {
namespace cpu {

// Whether run_weight_stream serves p: the active set has a WeightStream, a
// and b are bf16 (or byte codes, when decoding), b = w.t() (unit row
// stride), K > 0 is a multiple of the stream's depth step and M within its
// rows.
bool weight_stream_applies(const Problem& p, bool decoding = false);

// Computes p on up to requested_threads threads; p must satisfy
// weight_stream_applies. table: byte-coded a and b, decoded through it (their
// 256 bf16 codes). Fails only when its workspace cannot be allocated.
Status run_weight_stream(const Problem& p, int requested_threads, const uint16_t* table = nullptr);

}  // namespace cpu
}  // namespace hetero
