// What the CPU attention forward and backward share: element access by
// run-time dtype, and the score mask (causal, bool, additive) applied to one
// row of a score tile. Argument checks: hetero/attention_args.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "hetero/attention_args.h"
#include "hetero/dtype.h"
#include "hetero/status.h"
#include "hetero/tensor_view.h"
#include "kernels.h"

namespace hetero {
namespace cpu {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kInf = std::numeric_limits<float>::infinity();

inline float load_float(const void* base, DType dtype, int64_t offset) {
  switch (dtype) {
    case DType::float16: return to_float(static_cast<const Half*>(base)[offset]);
    case DType::bfloat16: return to_float(static_cast<const BFloat16*>(base)[offset]);
    case DType::boolean: return static_cast<const uint8_t*>(base)[offset] ? 1.0f : 0.0f;
    default: return static_cast<const float*>(base)[offset];
  }
}

inline void store_float(void* base, DType dtype, int64_t offset, float value) {
  switch (dtype) {
    case DType::float16: static_cast<Half*>(base)[offset] = float_to_half(value); break;
    case DType::bfloat16: static_cast<BFloat16*>(base)[offset] = float_to_bfloat16(value); break;
    default: static_cast<float*>(base)[offset] = value; break;
  }
}

// The rows [row0, row0 + rows) of a (B, H, S, X) view at batch b, head h, as
// a 2-D matrix for packing: row stride along S, column stride along X.
inline MatrixRef rows_of(const TensorView& t, int64_t b, int64_t h, int64_t row0) {
  const int64_t off = b * t.strides[0] + h * t.strides[1] + row0 * t.strides[2];
  return {t.element_ptr(off), t.dtype, t.strides[2], t.strides[3]};
}

// The same rows seen transposed (X x rows), e.g. K^T as a GEMM B operand.
inline MatrixRef rows_of_transposed(const TensorView& t, int64_t b, int64_t h, int64_t row0) {
  const MatrixRef m = rows_of(t, b, h, row0);
  return {m.data, m.dtype, m.col_stride, m.row_stride};
}

// Scores of query i against keys [j0, j0 + n), in log2 units (already times
// scale * log2(e)): caps them (softcap), adds the additive mask (times
// log2(e)) and sets what causality, the window or a bool mask hides to -inf.
// Query i is aligned to key i + causal_offset (bottom-right): it sees keys
// i + causal_offset - window_left <= j <= i + causal_offset + right_bound().
struct ScoreMask {
  const TensorView* mask;  // (B, Hq, Sq, Sk) or null
  bool causal;
  int64_t causal_offset;
  int64_t window_left = -1;   // -1: unbounded
  int64_t window_right = -1;  // -1: unbounded; causal bounds it by 0
  float softcap = 0.0f;       // > 0: s = softcap * tanh(s / softcap), in log2 units

  bool bounded_right() const { return causal || window_right >= 0; }
  int64_t right_bound() const { return causal ? 0 : window_right; }  // a window is never negative

  // How many of the keys [j0, j0 + n) the right bound lets query i see: they
  // are a prefix (all n when unbounded).
  int64_t visible(int64_t i, int64_t j0, int64_t n) const {
    if (!bounded_right()) return n;
    const int64_t last = i + causal_offset + right_bound() - j0;  // last visible index in this row
    return last < 0 ? 0 : (last + 1 < n ? last + 1 : n);
  }

  // The first of the keys [j0, j0 + n) the left bound lets query i see.
  int64_t first_visible(int64_t i, int64_t j0, int64_t n) const {
    if (window_left < 0) return 0;
    const int64_t first = i + causal_offset - window_left - j0;
    return first < 0 ? 0 : (first < n ? first : n);
  }

  void apply(float* s, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t n) const {
    const int64_t visible = this->visible(i, j0, n);
    if (softcap > 0.0f) cap_scores(s, visible, softcap);
    for (int64_t j = visible; j < n; ++j) s[j] = -kInf;
    for (int64_t j = 0, first = first_visible(i, j0, visible); j < first; ++j) s[j] = -kInf;
    if (mask == nullptr) return;
    const int64_t row = b * mask->strides[0] + h * mask->strides[1] + i * mask->strides[2];
    const int64_t col = mask->strides[3];
    if (mask->dtype == DType::boolean) {
      const uint8_t* m = static_cast<const uint8_t*>(mask->data) + row + j0 * col;
      for (int64_t j = 0; j < visible; ++j) {
        if (!m[j * col]) s[j] = -kInf;
      }
    } else {
      for (int64_t j = 0; j < visible; ++j) {
        s[j] += kLog2e * load_float(mask->data, mask->dtype, row + (j0 + j) * col);
      }
    }
  }

  // s = cap * tanh(s / cap) for s[0:n] (NaN stays NaN).
  static void cap_scores(float* s, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t j = 0; j < n; ++j) s[j] = cap * std::tanh(s[j] * inv);
  }
};

// The running max after a block whose max is block_max: a NaN wins (std::max
// would keep the old value), so it reaches the output.
inline float running_max(float m, float block_max) {
  return block_max > m || block_max != block_max ? block_max : m;
}

// 2^(m - m_new), by which a row's output accumulator is scaled when its max
// moves; once the max settles most blocks leave it unchanged: no exp2(0).
inline float rescale_factor(float m, float m_new) { return m_new == m ? 1.0f : std::exp2(m - m_new); }

// Folds one row of scores s[0:n] (log2 units, masked) into the row's running
// max m and sum l, and turns s into P = 2^(s - m). Returns the factor by
// which the row's output accumulator must be scaled first (1 if unchanged).
// While every score seen is -inf, P is 0 and m, l stay as they are; a NaN
// score makes m NaN, so it reaches the output.
inline float online_softmax_row(const KernelSet& ks, float* s, int64_t n, float* m, float* l) {
  const float m_new = running_max(*m, ks.row_max(s, n));
  if (m_new == -kInf) {
    for (int64_t j = 0; j < n; ++j) s[j] = 0.0f;
    return 1.0f;
  }
  const float rescale = rescale_factor(*m, m_new);
  *l = *l * rescale + ks.exp2_sum(s, n, m_new);
  *m = m_new;
  return rescale;
}

// What one forward call needs everywhere.
struct ForwardCall {
  const TensorView &q, &k, &v, &out;
  const TensorView* lse;
  AttentionShape shape;
  ScoreMask mask;
  float q_scale;  // scale * log2(e)
};

// out[at + r * rs + d * cs] = dtype(o[r * ld + d] * factor) for r < rows,
// d < cols, through the kernel set's vector epilogue where cs == 1 (a loop
// with a dtype switch per element was a hot spot of prefill once the
// products ran on tiles).
inline void store_scaled_rows(const KernelSet& ks, const TensorView& out, int64_t at, int64_t rs, int64_t cs,
                              const float* o, int64_t ld, int64_t rows, int64_t cols, float factor) {
  if (cs == 1) return ks.store_rows(o, ld, rows, cols, factor, out.element_ptr(at), out.dtype, rs);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < cols; ++d) store_float(out.data, out.dtype, at + r * rs + d * cs, o[r * ld + d] * factor);
  }
}

// Writes row i of head h in batch b: out = o / l (zeros where no key was
// visible, l == 0) and lse = ln(sum exp(scores)) from the log2-unit max m.
inline void write_output_row(const KernelSet& ks, const ForwardCall& c, int64_t b, int64_t h, int64_t i,
                             const float* o, float m, float l) {
  const int64_t row = b * c.out.strides[0] + h * c.out.strides[1] + i * c.out.strides[2];
  if (l != 0.0f) {
    store_scaled_rows(ks, c.out, row, 0, c.out.strides[3], o, 0, 1, c.shape.Dv, 1.0f / l);
  } else {
    for (int64_t d = 0; d < c.shape.Dv; ++d) store_float(c.out.data, c.out.dtype, row + d * c.out.strides[3], 0.0f);
  }
  if (c.lse != nullptr) {
    const float value = l == 0.0f ? kInf : (m + std::log2(l)) / kLog2e;
    static_cast<float*>(c.lse->data)[b * c.lse->strides[0] + h * c.lse->strides[1] + i * c.lse->strides[2]] = value;
  }
}

// Computes a validated call c of any shape on the best path (decode, bf16 or
// fp32 flash) on up to num_threads threads (attention_forward.cpp). May throw
// std::bad_alloc before any thread starts.
void run_forward(const ForwardCall& c, int num_threads);

}  // namespace cpu
}  // namespace hetero
