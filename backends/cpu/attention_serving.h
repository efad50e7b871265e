// Attention as serving engines call it: sequences of different lengths packed
// into one batch (attention_serving.cpp), and keys/values in a paged cache
// (attention_paged.cpp).
#pragma once

#include <cstdint>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace cpu {

// What every sequence's scores go through. Query i of a sequence with Sq new
// queries and Sk keys is aligned to key p = i + Sk - Sq (bottom-right) and sees
// keys j with p - window_left <= j <= p + window_right (-1: unbounded; causal
// bounds the right by 0). softcap > 0: scores (times scale) become
// softcap * tanh(score / softcap) before masking. A query that sees no key
// gets zeros.
struct ServingMask {
  double scale;
  bool causal;
  int64_t window_left, window_right;
  double softcap;
};

// Packed sequences: sequence b is rows cu_q[b]:cu_q[b+1] of q and
// cu_k[b]:cu_k[b+1] of k and v.
//   q (Tq, Hq, D), k (Tk, Hkv, D), v (Tk, Hkv, Dv), out (Tq, Hq, Dv): one
//     dtype, float32/float16/bfloat16, any strides; Hq % Hkv == 0.
//   cu_q, cu_k: (B + 1,) int32, non-decreasing from 0 to Tq (Tk).
//   lse: null, or (Hq, Tq) float32 receiving each row's natural-log
//     log-sum-exp (+inf for a row that sees no key).
Status varlen_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                                const TensorView& cu_q, const TensorView& cu_k,
                                const ServingMask& mask, const TensorView& out,
                                const TensorView* lse, int num_threads);

// The block table's checks (paged_attention_forward makes them too): each of
// seq_lens (B,) int32 within block_table (B, max_blocks) int32's capacity,
// and every block a sequence uses in [0, num_blocks).
Status check_paged_tables(const TensorView& block_table, const TensorView& seq_lens, int64_t num_blocks,
                          int64_t block_size);

// Keys and values in pages: key j of sequence b is row j % bs of block
// block_table[b, j / bs] of the caches, for j < seq_lens[b].
//   q (Tq, Hq, D), out (Tq, Hq, Dv): the caches' dtype, any strides.
//   k_cache (num_blocks, bs, Hkv, D), v_cache (num_blocks, bs, Hkv, Dv):
//     unit stride along D (Unsupported otherwise).
//   block_table (B, max_blocks), seq_lens (B,): int32; every block a sequence
//     uses is in [0, num_blocks) and seq_lens[b] <= max_blocks * bs.
//   cu_q: null (then Tq == B: one query per sequence, decode) or (B + 1,)
//     int32 as for varlen (several new queries per sequence: the last ones
//     of its keys).
// Work items are (sequence, key/value head, up to 48 query rows of its
// group; 16 on AMX tiles, 8 on AVX-512 vectors); when there are fewer than two per thread, each
// item's keys are split across threads and the parts merged by their softmax
// statistics (flash-decoding).
Status paged_attention_forward(const TensorView& q, const TensorView& k_cache,
                               const TensorView& v_cache, const TensorView& block_table,
                               const TensorView& seq_lens, const TensorView* cu_q,
                               const ServingMask& mask, const TensorView& out, int num_threads);

}  // namespace cpu
}  // namespace hetero
