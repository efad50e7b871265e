// The decode-shaped attention forward (attention_decode.cpp): the query rows
// of a GQA group as one small-M GEMM against unpacked K and V.
#pragma once

#include "attention_common.h"

namespace hetero {
namespace cpu {

// Whether attention_decode serves c: at most 16 query rows per key/value
// head (group * Sq), Sk > 0, and rows of k and v contiguous in d.
bool decode_applies(const ForwardCall& c);

// Computes c on up to `threads` threads, one (batch, key/value head) at a
// time each. May throw std::bad_alloc (before any thread starts).
void attention_decode(const KernelSet& ks, const ForwardCall& c, int threads);

}  // namespace cpu
}  // namespace hetero
