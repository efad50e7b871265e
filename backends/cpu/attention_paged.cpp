// Serving attention on the CPU: queries against a paged KV cache
// (attention_serving.h).
//
// Keys are not a strided view, so the decode path's small-M products
// walk the pages instead. The query rows of one sequence and key/value head
// (query-major: row r is query r / group of head hkv * group + r % group)
// go in parts of up to kRowsPerPart rows, each over the keys its first and
// last query can see:
//
//   Q  (R x D)      float32, times scale * log2(e)
//   per key block [j0, j0 + n), n <= kBK, one page slice at a time:
//     S (R x n)   = Q . K^T                               small_m_dot (K rows contiguous in d)
//     cap, mask, m, l, P = 2^(S - m)                      online softmax in log2 units
//     O (R x Dv)  = O * 2^(m_old - m_new) + P . V         small_m_axpy (V rows contiguous in d)
//
// A sequence's key/value heads go in groups (items); with fewer sequences
// than threads the groups shrink until every thread has one. With fewer than
// two items per thread still (decode of a few sequences), each item's keys
// are split into parts whose (O, m, l) are merged at the end.
//
// The avx512 set runs items on its own paged kernels instead (kernels.h
// PagedRows): bf16 on AMX tiles where the CPU has AMX-BF16, 16 rows per item
// (kernels_amx_attention.cpp); otherwise on AVX-512 vectors, up to 8 rows per
// head and as many heads per item as the scratch holds rows for
// (kernels_avx512_paged.cpp), so that a key's row of the cache is read as one
// run. Both read each key and value once per item, from its page.

#include "attention_serving.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attention_common.h"
#include "attention_serving_checks.h"
#include "thread_pool.h"
#include "workspace.h"

namespace hetero {
namespace cpu {
namespace {

using namespace serving;

constexpr int64_t kRowsPerPart = 48;      // query rows multiplied together (small-M limit)
constexpr int64_t kBK = 512;              // keys per block of scores
constexpr int64_t kMinKeysPerSplit = 256;  // a split part reads at least this many keys

struct PagedCall {
  const TensorView &q, &kc, &vc, &table, &lens, &out;
  const TensorView* cu_q;
  const ServingMask& mask;
  int64_t Hq, Hkv, D, Dv, block_size;
  PagedRowsFn rows_kernel = nullptr;  // set where a kernel set's paged kernel serves the items
  bool aligned_walk = false;          // the kernel walks keys from a multiple of 16

  int64_t group() const { return Hq / Hkv; }
  int64_t keys(int64_t b) const { return int_at(lens, b); }
  int64_t first_query(int64_t b) const { return cu_q ? int_at(*cu_q, b) : b; }
  int64_t queries(int64_t b) const { return cu_q ? int_at(*cu_q, b + 1) - int_at(*cu_q, b) : 1; }
  int32_t block(int64_t b, int64_t i) const {
    return static_cast<const int32_t*>(table.data)[b * table.strides[0] + i * table.strides[1]];
  }
  // Keys [lo, hi) query i (of the sequence's nq) may see.
  void visible(int64_t b, int64_t i, int64_t* lo, int64_t* hi) const {
    const int64_t sk = keys(b), p = i + sk - queries(b);
    *lo = mask.window_left >= 0 ? std::max<int64_t>(0, p - mask.window_left) : 0;
    const int64_t right = mask.causal ? 0 : mask.window_right;
    *hi = right >= 0 ? std::min(sk, std::max<int64_t>(0, p + right + 1)) : sk;
    *lo = std::min(*lo, *hi);
  }
};

// One piece of work: query rows [r0, r1) of sequence b for key/value heads
// [hkv, hkv + heads) over keys [j0, j1); `partial` >= 0 indexes its slot for
// merging. Its heads * (r1 - r0) rows go head-major.
struct Item {
  int64_t b, hkv, heads, r0, r1, j0, j1, partial;

  int64_t rows() const { return heads * (r1 - r0); }
};

// Where row x of an item goes in out.
int64_t out_offset(const PagedCall& c, const Item& it, int64_t x) {
  const int64_t r = it.r0 + x % (it.r1 - it.r0), hkv = it.hkv + x / (it.r1 - it.r0);
  return (c.first_query(it.b) + r / c.group()) * c.out.strides[0] + (hkv * c.group() + r % c.group()) * c.out.strides[1];
}

struct PagedScratch {
  float *q, *s, *o, *m, *l;
  static int64_t floats(const PagedCall& c) { return kRowsPerPart * (c.D + kBK + c.Dv + 2); }
  static PagedScratch carve(float* base, const PagedCall& c) {
    PagedScratch w;
    w.q = base;
    w.s = w.q + kRowsPerPart * c.D;
    w.o = w.s + kRowsPerPart * kBK;
    w.m = w.o + kRowsPerPart * c.Dv;
    w.l = w.m + kRowsPerPart;
    return w;
  }
};

// Calls fn(slice start j, count, block id, row in block) for the page slices
// covering keys [j0, j0 + n) of sequence b.
template <class Fn>
void for_each_page_slice(const PagedCall& c, int64_t b, int64_t j0, int64_t n, Fn fn) {
  for (int64_t j = j0; j < j0 + n;) {
    const int64_t offset = j % c.block_size;
    const int64_t count = std::min(c.block_size - offset, j0 + n - j);
    fn(j, count, c.block(b, j / c.block_size), offset);
    j += count;
  }
}

// The item's (O, m, l) by the kernel set's paged kernel (kernels.h PagedRows).
void rows_item(const PagedCall& c, const PagedScratch& w, const Item& it) {
  const int64_t group = c.group(), q0 = c.first_query(it.b);
  PagedRows p{};
  p.dtype = c.q.dtype;
  p.rows = static_cast<int>(it.r1 - it.r0);
  p.heads = static_cast<int>(it.heads);
  p.q_head = group * c.q.strides[1];
  p.D = c.D;
  p.Dv = c.Dv;
  p.q_scale = static_cast<float>(c.mask.scale) * kLog2e;
  for (int r = 0; r < p.rows; ++r) {
    const int64_t query = (it.r0 + r) / group, head = it.hkv * group + (it.r0 + r) % group;
    p.q[r] = c.q.element_ptr((q0 + query) * c.q.strides[0] + head * c.q.strides[1]);
    int64_t lo, hi;
    c.visible(it.b, query, &lo, &hi);
    p.lo[r] = std::max(lo, it.j0);  // a split part counts only its own keys
    p.hi[r] = std::max(p.lo[r], std::min(hi, it.j1));
  }
  p.j0 = c.aligned_walk ? it.j0 / 16 * 16 : it.j0;
  p.j1 = it.j1;
  p.k_cache = c.kc.element_ptr(it.hkv * c.kc.strides[2]);
  p.v_cache = c.vc.element_ptr(it.hkv * c.vc.strides[2]);
  p.k_block = c.kc.strides[0];
  p.k_row = c.kc.strides[1];
  p.k_head = c.kc.strides[2];
  p.v_block = c.vc.strides[0];
  p.v_row = c.vc.strides[1];
  p.v_head = c.vc.strides[2];
  p.table = static_cast<const int32_t*>(c.table.data) + it.b * c.table.strides[0];
  p.table_stride = c.table.strides[1];
  p.block_size = c.block_size;
  p.scratch = w.q;
  c.rows_kernel(p, w.o, w.m, w.l);
}

// The item's (O, m, l) by the small-M products, page slice by page slice
// (items of one head).
void products(const KernelSet& ks, const PagedCall& c, const PagedScratch& w, const Item& it) {
  const int64_t rows = it.r1 - it.r0, group = c.group(), q0 = c.first_query(it.b);
  const float q_scale = static_cast<float>(c.mask.scale) * kLog2e;
  const float cap = static_cast<float>(c.mask.softcap) * kLog2e;
  auto query = [&](int64_t r) { return (it.r0 + r) / group; };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = it.hkv * group + (it.r0 + r) % group;
    const int64_t offset = (q0 + query(r)) * c.q.strides[0] + head * c.q.strides[1];
    ks.widen_rows({c.q.element_ptr(offset), c.q.dtype, 0, c.q.strides[2]}, 1, c.D, w.q + r * c.D, c.D);
  }
  for (int64_t x = 0; x < rows * c.D; ++x) w.q[x] *= q_scale;
  ks.order_dot_rows(w.q, rows, c.D, c.D, c.kc.dtype);
  std::fill(w.m, w.m + rows, -kInf);
  std::fill(w.l, w.l + rows, 0.0f);
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(rows * c.Dv));

  for (int64_t j0 = it.j0; j0 < it.j1; j0 += kBK) {
    const int64_t n = std::min(kBK, it.j1 - j0);
    for_each_page_slice(c, it.b, j0, n, [&](int64_t j, int64_t count, int32_t blk, int64_t row) {
      const int64_t at = blk * c.kc.strides[0] + row * c.kc.strides[1] + it.hkv * c.kc.strides[2];
      ks.small_m_dot({c.kc.element_ptr(at), c.kc.dtype, 1, c.kc.strides[1]}, c.D, count, w.q, c.D, rows,
                     w.s + (j - j0), n, false);
    });
    for (int64_t r = 0; r < rows; ++r) {
      float* s = w.s + r * n;
      int64_t lo, hi;
      c.visible(it.b, query(r), &lo, &hi);
      lo = std::clamp<int64_t>(lo - j0, 0, n);
      hi = std::clamp<int64_t>(hi - j0, lo, n);
      if (cap > 0.0f) ScoreMask::cap_scores(s + lo, hi - lo, cap);
      std::fill(s, s + lo, -kInf);
      std::fill(s + hi, s + n, -kInf);
      const float rescale = online_softmax_row(ks, s, n, &w.m[r], &w.l[r]);
      if (rescale != 1.0f) {
        float* o = w.o + r * c.Dv;
        for (int64_t d = 0; d < c.Dv; ++d) o[d] *= rescale;
      }
    }
    for_each_page_slice(c, it.b, j0, n, [&](int64_t j, int64_t count, int32_t blk, int64_t row) {
      const int64_t at = blk * c.vc.strides[0] + row * c.vc.strides[1] + it.hkv * c.vc.strides[2];
      ks.small_m_axpy({c.vc.element_ptr(at), c.vc.dtype, c.vc.strides[1], 1}, count, c.Dv, w.s + (j - j0), n,
                      rows, w.o, c.Dv, true);
    });
  }
}

void run_item(const KernelSet& ks, const PagedCall& c, const PagedScratch& w, const Item& it,
              float* partial) {
  if (c.rows_kernel != nullptr) {
    rows_item(c, w, it);
  } else {
    products(ks, c, w, it);
  }
  const int64_t rows = it.rows();
  if (partial != nullptr) {  // (O, m, l) of each row, merged later
    for (int64_t r = 0; r < rows; ++r) {
      float* slot = partial + r * (c.Dv + 2);
      std::copy(w.o + r * c.Dv, w.o + (r + 1) * c.Dv, slot);
      slot[c.Dv] = w.m[r];
      slot[c.Dv + 1] = w.l[r];
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = w.l[r] == 0.0f ? 0.0f : 1.0f / w.l[r];
    store_scaled_rows(ks, c.out, out_offset(c, it, r), 0, c.out.strides[2], w.o + r * c.Dv, 0, 1, c.Dv, inv);
  }
}

// Merges the `splits` parts of one item's rows into out: part p's row r is
// (O[Dv], m, l) at partial + p * stride + r * (Dv + 2).
void merge_parts(const PagedCall& c, const Item& it, int64_t splits, const float* partial, int64_t stride) {
  const int64_t rows = it.rows();
  std::vector<float> o(static_cast<size_t>(c.Dv));
  for (int64_t r = 0; r < rows; ++r) {
    float m = -kInf;
    for (int64_t p = 0; p < splits; ++p) {
      const float mp = partial[p * stride + r * (c.Dv + 2) + c.Dv];
      m = mp > m || mp != mp ? mp : m;  // NaN wins
    }
    float l = 0.0f;
    std::fill(o.begin(), o.end(), 0.0f);
    if (m != -kInf) {
      for (int64_t p = 0; p < splits; ++p) {
        const float* slot = partial + p * stride + r * (c.Dv + 2);
        if (slot[c.Dv + 1] == 0.0f) continue;
        const float weight = std::exp2(slot[c.Dv] - m);
        l += slot[c.Dv + 1] * weight;
        for (int64_t d = 0; d < c.Dv; ++d) o[d] += slot[d] * weight;
      }
    }
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    const int64_t at = out_offset(c, it, r);
    for (int64_t d = 0; d < c.Dv; ++d) store_float(c.out.data, c.out.dtype, at + d * c.out.strides[2], o[d] * inv);
  }
}


}  // namespace

Status check_paged_tables(const TensorView& block_table, const TensorView& seq_lens, int64_t num_blocks,
                          int64_t block_size) {
  const int64_t max_blocks = block_table.sizes[1];
  const auto* table = static_cast<const int32_t*>(block_table.data);
  for (int64_t b = 0; b < seq_lens.sizes[0]; ++b) {
    const int64_t keys = int_at(seq_lens, b);
    if (keys < 0 || keys > max_blocks * block_size) {
      return invalid("seq_lens", "entries in [0, " + std::to_string(max_blocks * block_size) + "] (the block table's capacity)",
                     std::to_string(keys) + " at " + std::to_string(b));
    }
    for (int64_t i = 0; i < ceil_div(keys, block_size); ++i) {
      const int32_t block = table[b * block_table.strides[0] + i * block_table.strides[1]];
      if (block < 0 || block >= num_blocks) {
        return invalid("block_table", "block ids in [0, " + std::to_string(num_blocks) + ")",
                       std::to_string(block) + " at (" + std::to_string(b) + ", " + std::to_string(i) + ")");
      }
    }
  }
  return Status::Ok();
}

Status paged_attention_forward(const TensorView& q, const TensorView& k_cache,
                               const TensorView& v_cache, const TensorView& block_table,
                               const TensorView& seq_lens, const TensorView* cu_q,
                               const ServingMask& mask, const TensorView& out, int num_threads) {
  try {
    Status s = check_num_threads(num_threads);
    const std::tuple<const TensorView*, const char*, int32_t> views[] = {
        {&q, "q", 3}, {&out, "out", 3}, {&k_cache, "k_cache", 4}, {&v_cache, "v_cache", 4},
        {&block_table, "block_table", 2}, {&seq_lens, "seq_lens", 1}};
    for (const auto& [t, name, ndim] : views) {
      if (s.ok()) s = check_ndim(*t, name, ndim);
      if (s.ok() && ndim > 2) s = check_same_float(*t, name, q.dtype);
    }
    if (!s.ok()) return s;
    if (block_table.dtype != DType::int32) return invalid("block_table", "dtype int32", dtype_name(block_table.dtype));
    if (seq_lens.dtype != DType::int32) return invalid("seq_lens", "dtype int32", dtype_name(seq_lens.dtype));
    const int64_t batch = block_table.sizes[0], Hq = q.sizes[1], Hkv = k_cache.sizes[2];
    const int64_t D = q.sizes[2], Dv = v_cache.sizes[3], bs = k_cache.sizes[1];
    if (Hkv == 0 || Hq % Hkv != 0) return invalid("k_cache", "a head count dividing q's " + std::to_string(Hq), std::to_string(Hkv));
    if (k_cache.sizes[3] != D || v_cache.sizes[0] != k_cache.sizes[0] || v_cache.sizes[1] != bs ||
        v_cache.sizes[2] != Hkv || out.sizes[0] != q.sizes[0] || out.sizes[1] != Hq || out.sizes[2] != Dv ||
        seq_lens.sizes[0] != batch) {
      return Status::InvalidArgument("k_cache, v_cache, out, seq_lens: sizes do not match q (Tq, Hq, D), "
                                     "caches (num_blocks, block_size, Hkv, D / Dv), block_table (B, max_blocks)");
    }
    if (bs == 0) return invalid("k_cache", "a block size of at least 1", "0");
    if (k_cache.strides[3] != 1 || v_cache.strides[3] != 1) {
      return Status::Unsupported("k_cache, v_cache: need unit stride along the head dim");
    }
    if (cu_q != nullptr) {
      if (!(s = check_cu_seqlens(*cu_q, "cu_seqlens_q", batch, q.sizes[0])).ok()) return s;
    } else if (q.sizes[0] != batch) {
      return invalid("q", std::to_string(batch) + " rows (one query per sequence)", std::to_string(q.sizes[0]));
    }
    PagedCall c{q, k_cache, v_cache, block_table, seq_lens, out, cu_q, mask, Hq, Hkv, D, Dv, bs};
    const KernelSet& ks = active_kernels();
    // The kernel set's paged kernels (kernels.h PagedRows): unit-stride query
    // rows, no softcap; AMX for bf16 where a (sequence, key/value head) has at
    // least half a tile of query rows on average, else AVX-512 vectors (a
    // decode step's few rows per head would leave most of each tile idle).
    int64_t rows_per_part = kRowsPerPart, max_heads = 1;
    const bool tiles_fill = q.sizes[0] * (Hq / std::max<int64_t>(Hkv, 1)) >= 8 * block_table.sizes[0];
    if (q.strides[2] == 1 && mask.softcap == 0.0 && D % 32 == 0 && D <= 512 && Dv % 16 == 0 && Dv <= 512) {
      if (ks.amx_paged_rows != nullptr && q.dtype == DType::bfloat16 && bs % 16 == 0 && tiles_fill) {
        c.rows_kernel = ks.amx_paged_rows;
        c.aligned_walk = true;
        rows_per_part = 16;
      } else if (ks.vector_paged_rows != nullptr && Dv % 32 == 0) {
        c.rows_kernel = ks.vector_paged_rows;
        rows_per_part = kPagedVectorRows;
        max_heads = kPagedVectorHeads;
      }
    }
    if (!(s = check_paged_tables(block_table, seq_lens, k_cache.sizes[0], bs)).ok()) return s;
    if (q.sizes[0] == 0 || Dv == 0) return Status::Ok();

    // Parts: (sequence, a part of its query rows per head) over the keys the
    // part sees.
    std::vector<Item> parts;
    int64_t work = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t rows = c.queries(b) * c.group();
      for (int64_t r0 = 0; r0 < rows; r0 += rows_per_part) {
        const int64_t r1 = std::min(rows, r0 + rows_per_part);
        int64_t lo, hi, lo_last, hi_last;
        c.visible(b, r0 / c.group(), &lo, &hi);
        c.visible(b, (r1 - 1) / c.group(), &lo_last, &hi_last);
        parts.push_back({b, 0, Hkv, r0, r1, lo, std::max(hi, hi_last), -1});
        work += Hkv * (r1 - r0) * std::max<int64_t>(1, std::max(hi, hi_last) - lo) * (D + Dv);
      }
    }
    const int threads = threads_for_work(num_threads, work, int64_t{1} << 16);
    // Items: each part's key/value heads in groups as large as the scratch
    // holds rows for (a kernel taking several reads each key's row of the
    // cache in one run), but small enough that every thread gets one where
    // there are fewer parts than threads (a decode step of one sequence):
    // splitting the keys instead costs a merge.
    max_heads = std::min(max_heads, std::max<int64_t>(1, Hkv * static_cast<int64_t>(parts.size()) / threads));
    std::vector<Item> items;
    for (const Item& part : parts) {
      const int64_t heads = std::clamp<int64_t>(kRowsPerPart / (part.r1 - part.r0), 1, max_heads);
      for (int64_t hkv = 0; hkv < Hkv; hkv += heads) {
        items.push_back({part.b, hkv, std::min(heads, Hkv - hkv), part.r0, part.r1, part.j0, part.j1, -1});
      }
    }
    const int64_t base_items = static_cast<int64_t>(items.size());
    // Flash-decoding: too few items for the threads -> split each item's keys.
    int64_t splits = 1;
    if (base_items < 2 * threads) {
      int64_t longest = 0;
      for (const Item& it : items) longest = std::max(longest, it.j1 - it.j0);
      splits = std::max<int64_t>(1, std::min(ceil_div(2 * threads, base_items), longest / kMinKeysPerSplit));
    }
    std::vector<Item> work_items;
    std::vector<float> partial;
    if (splits == 1) {
      work_items = items;
    } else {
      partial.resize(static_cast<size_t>(base_items * splits * kRowsPerPart * (Dv + 2)));
      for (int64_t i = 0; i < base_items; ++i) {
        const Item& it = items[i];
        const int64_t per = ceil_div(it.j1 - it.j0, splits);
        for (int64_t p = 0; p < splits; ++p) {
          const int64_t j0 = std::min(it.j1, it.j0 + p * per), j1 = std::min(it.j1, j0 + per);
          work_items.push_back({it.b, it.hkv, it.heads, it.r0, it.r1, j0, j1, i * splits + p});
        }
      }
    }
    const std::vector<float*> scratch = per_thread_scratch(threads, PagedScratch::floats(c));
    const int64_t slot = kRowsPerPart * (Dv + 2);
    std::atomic<int64_t> next{0};
    parallel_run(threads, [&](int t) {
      const PagedScratch w = PagedScratch::carve(scratch[t], c);
      for (int64_t i = next++; i < static_cast<int64_t>(work_items.size()); i = next++) {
        const Item& it = work_items[i];
        run_item(ks, c, w, it, it.partial < 0 ? nullptr : partial.data() + it.partial * slot);
      }
    });
    for (int64_t i = 0; splits > 1 && i < base_items; ++i) {
      merge_parts(c, items[i], splits, partial.data() + i * splits * slot, slot);
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("paged_attention: ") + e.what());
  }
}

}  // namespace cpu
}  // namespace hetero
