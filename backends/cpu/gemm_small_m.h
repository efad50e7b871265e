// The small-M GEMM driver (gemm_small_m.cpp): decode-shaped products that
// stream b once instead of packing it.
#pragma once

#include "gemm_problem.h"
#include "hetero/status.h"

namespace hetero {
namespace cpu {

// Whether run_small_m serves p: at most 48 rows, K > 0, and b with unit
// stride along k or n.
bool small_m_applies(const Problem& p);

// Computes p on up to requested_threads threads; p must satisfy
// small_m_applies. Fails only when its workspace cannot be allocated.
Status run_small_m(const Problem& p, int requested_threads);

}  // namespace cpu
}  // namespace hetero
