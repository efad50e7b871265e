// A paged KV cache's two calls per layer and decode step, on CPU tensors, without Python.
// A serving engine makes them over a few hundred cached keys, where the Python paths'
// checks cost more than the work. Each entry runs every check its Python path makes
// natively first, so a call that passes cannot make that path raise; anything else is
// left to the Python path, which names what is wrong.
//
// hetero_route::paged_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor
// block_table, Tensor seq_lens, float scale, bool causal, int window_left, int
// window_right, float softcap) -> Tensor: hetero.paged_attention's decode step (one query
// per sequence, a fresh result, no backend named). Checked: shapes, dtypes, devices, the
// window and softcap, each sequence's length against the block table, every block id it
// uses. The cached decision (hetero's dispatcher, asked once per dtype, head dims, block
// size and mask features) then runs cpu's paged kernel; other decisions, and calls it
// leaves, get an undefined tensor (None in Python).
//
// hetero_route::write_kv_cache(Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!)
// v_cache, Tensor slot_mapping) -> bool: hetero.write_kv_cache's scatter (caches of a
// float dtype); false where it leaves the call to the Python path.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/attention_serving.h"
#include "route/common.h"

namespace hetero::route {
namespace {

// ---------------------------------------------------------------- paged_attention
// The Python path's structural checks (ops/paged_attention/api.py prepare, decode form).
bool plain_decode_call(const Operand& q, const Operand& kc, const Operand& vc, const Operand& table,
                       const Operand& lens, DType* dtype) {
  if (q.dim != 3 || kc.dim != 4 || vc.dim != 4 || table.dim != 2 || lens.dim != 1) return false;
  if (!hetero_dtype(q.dtype, dtype) || *dtype == DType::float64 || kc.dtype != q.dtype ||
      vc.dtype != q.dtype || table.dtype != g_shim.int32 || lens.dtype != g_shim.int32) {
    return false;
  }
  for (const Operand* t : {&q, &kc, &vc, &table, &lens}) {
    if (!on_cpu(*t)) return false;
  }
  const int64_t batch = q.sizes[0], Hq = q.sizes[1], D = q.sizes[2], Hkv = kc.sizes[2];
  return kc.sizes[1] > 0 && vc.sizes[0] == kc.sizes[0] && vc.sizes[1] == kc.sizes[1] && Hkv > 0 &&
         Hq % Hkv == 0 && kc.sizes[3] == D && vc.sizes[2] == Hkv && D > 0 &&
         table.sizes[0] == batch && lens.sizes[0] == batch;
}

AtenTensorHandle paged_call_result(const Operand& q, const Operand& kc, const Operand& vc,
                                   const Operand& table, const Operand& lens, double scale,
                                   bool causal, int64_t left, int64_t right, double softcap) {
  DType dtype;
  if (!plain_decode_call(q, kc, vc, table, lens, &dtype) || left < -1 || right < -1 ||
      !(softcap >= 0.0) || std::isinf(softcap) ||
      !cpu::check_paged_tables(table.view(DType::int32), lens.view(DType::int32), kc.sizes[0], kc.sizes[1])
           .ok()) {
    return declined();
  }
  const int64_t batch = q.sizes[0], Hq = q.sizes[1], D = q.sizes[2], Dv = vc.sizes[3];
  const bool windowed = left >= 0 || (right >= 0 && !causal);  // api.py windowed()
  const Key key{kOpPagedCall, q.dtype, D, Dv, kc.sizes[1], causal, Hq != kc.sizes[2], windowed,
                softcap > 0.0, alignment({q.data, kc.data, vc.data})};
  const int64_t action = decision(key, key, [&] {
    StableIValue args[10] = {q.copy(),      kc.copy(),      vc.copy(),     table.copy(),
                             lens.copy(),   boxed(scale),   boxed(causal), boxed(left),
                             boxed(right),  boxed(softcap)};
    return ask_python("hetero_route::decide_paged_attention_call", args);
  }) & 3;
  if (action != kNative) return declined();
  const int64_t sizes[3] = {batch, Hq, Dv}, strides[3] = {Hq * Dv, Dv, 1};
  Operand out;
  out.reset(empty(3, sizes, strides, q.dtype));
  const cpu::ServingMask mask{scale, causal, left, right, softcap};
  const TensorView out_view = out.view(dtype);
  const Status status = cpu::paged_attention_forward(q.view(dtype), kc.view(dtype), vc.view(dtype),
                                                     table.view(DType::int32), lens.view(DType::int32),
                                                     nullptr, mask, out_view, kernel_threads());
  if (!status.ok()) return declined();  // e.g. caches strided along D: the Python path copies
  return out.release();
}

void paged_attention_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand q(stack[0]), kc(stack[1]), vc(stack[2]), table(stack[3]), lens(stack[4]);
  stack[0] = reinterpret_cast<StableIValue>(paged_call_result(
      q, kc, vc, table, lens, unboxed<double>(stack[5]), unboxed<bool>(stack[6]),
      unboxed<int64_t>(stack[7]), unboxed<int64_t>(stack[8]), unboxed<double>(stack[9])));
}

// ---------------------------------------------------------------- write_kv_cache
// The Python path's checks (ops/paged_attention/kv_cache.py), the slots' included.
bool plain_write(const Operand& k, const Operand& v, const Operand& kc, const Operand& vc,
                 const Operand& slots, DType* dtype) {
  if (k.dim != 3 || v.dim != 3 || kc.dim != 4 || vc.dim != 4 || slots.dim != 1) return false;
  if (!hetero_dtype(k.dtype, dtype) || v.dtype != k.dtype || kc.dtype != k.dtype ||
      vc.dtype != k.dtype || slots.dtype != g_shim.int64) {
    return false;
  }
  for (const Operand* t : {&k, &v, &kc, &vc, &slots}) {
    if (!on_cpu(*t)) return false;
  }
  const int64_t rows = k.sizes[0];
  if (vc.sizes[0] != kc.sizes[0] || vc.sizes[1] != kc.sizes[1] || k.sizes[1] != kc.sizes[2] ||
      k.sizes[2] != kc.sizes[3] || v.sizes[0] != rows || v.sizes[1] != vc.sizes[2] ||
      v.sizes[2] != vc.sizes[3] || slots.sizes[0] != rows) {
    return false;
  }
  const int64_t capacity = kc.sizes[0] * kc.sizes[1];
  std::vector<int64_t> used;
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t slot = static_cast<const int64_t*>(slots.data)[t * slots.strides[0]];
    if (slot < -1 || slot >= capacity) return false;
    if (slot >= 0) used.push_back(slot);
  }
  std::sort(used.begin(), used.end());
  return std::adjacent_find(used.begin(), used.end()) == used.end();  // no slot written twice
}

// Row t of `from` (T, H, D) into (block, offset) of `cache` (num_blocks, block_size, H, D).
void copy_row(const Operand& from, int64_t t, const Operand& cache, int64_t block, int64_t offset,
              int64_t bytes) {
  const auto* src = static_cast<const char*>(from.data);
  auto* dst = static_cast<char*>(cache.data);
  const int64_t heads = from.sizes[1], dim = from.sizes[2];
  for (int64_t h = 0; h < heads; ++h) {
    const char* s = src + (t * from.strides[0] + h * from.strides[1]) * bytes;
    char* d = dst + (block * cache.strides[0] + offset * cache.strides[1] + h * cache.strides[2]) * bytes;
    if (from.strides[2] == 1 && cache.strides[3] == 1) {
      std::memcpy(d, s, static_cast<size_t>(dim * bytes));
    } else {
      for (int64_t x = 0; x < dim; ++x) {
        std::memcpy(d + x * cache.strides[3] * bytes, s + x * from.strides[2] * bytes, static_cast<size_t>(bytes));
      }
    }
  }
}

bool write_kv_cache_result(const Operand& k, const Operand& v, const Operand& kc, const Operand& vc,
                           const Operand& slots) {
  DType dtype;
  if (!plain_write(k, v, kc, vc, slots, &dtype)) return false;
  const int64_t bytes = element_size(dtype), block_size = kc.sizes[1];
  for (int64_t t = 0; t < k.sizes[0]; ++t) {
    const int64_t slot = static_cast<const int64_t*>(slots.data)[t * slots.strides[0]];
    if (slot < 0) continue;
    copy_row(k, t, kc, slot / block_size, slot % block_size, bytes);
    copy_row(v, t, vc, slot / block_size, slot % block_size, bytes);
  }
  return true;
}

void write_kv_cache_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand k(stack[0]), v(stack[1]), kc(stack[2]), vc(stack[3]), slots(stack[4]);
  stack[0] = boxed(write_kv_cache_result(k, v, kc, vc, slots));
}

}  // namespace

const Registration kPagedAttentionCall = {"paged_attention", paged_attention_call};
const Registration kWriteKvCacheCall = {"write_kv_cache", write_kv_cache_call};

}  // namespace hetero::route
