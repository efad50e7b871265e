// The decode-shaped attention forward (attention_decode.cpp): the query rows
// of a GQA group as small-M GEMMs against unpacked K and V.
#pragma once

#include "attention_common.h"

namespace hetero {
namespace cpu {

// Whether attention_decode serves c: at most 8 queries per head, Sk > 0,
// and rows of k and v contiguous in d.
bool decode_applies(const ForwardCall& c);

// Computes c on up to `threads` threads, each taking (batch, key/value head,
// part of its query rows) items. May throw std::bad_alloc (before any thread
// starts).
void attention_decode(const KernelSet& ks, const ForwardCall& c, int threads);

}  // namespace cpu
}  // namespace hetero
