// Argument checks the serving attention kernels share (attention_serving.cpp,
// attention_paged.cpp): dims and dtypes of views, and int32 cu_seqlens.
#pragma once

#include <cstdint>
#include <string>

#include "hetero/status.h"
#include "hetero/tensor_view.h"
#include "hetero/view_checks.h"

namespace hetero {
namespace cpu {
namespace serving {

inline bool is_float(DType d) { return d == DType::float32 || d == DType::float16 || d == DType::bfloat16; }

inline Status check_ndim(const TensorView& t, const char* name, int32_t ndim) {
  Status s = check_view(t, name, ndim);
  if (s.ok() && t.ndim != ndim) return invalid(name, std::to_string(ndim) + " dims", std::to_string(t.ndim));
  return s;
}

inline Status check_same_float(const TensorView& t, const char* name, DType want) {
  if (t.dtype == want && is_float(want)) return Status::Ok();
  return Status::Unsupported(std::string(name) + ": expected dtype " + dtype_name(want) +
                             " (float32, float16 or bfloat16, one for all), got " + dtype_name(t.dtype));
}

inline int32_t int_at(const TensorView& t, int64_t i) { return static_cast<const int32_t*>(t.data)[i * t.strides[0]]; }

// cu (B + 1,) int32 from 0 to total, non-decreasing.
inline Status check_cu_seqlens(const TensorView& cu, const char* name, int64_t batch, int64_t total) {
  Status s = check_ndim(cu, name, 1);
  if (!s.ok()) return s;
  if (cu.dtype != DType::int32) return invalid(name, "dtype int32", dtype_name(cu.dtype));
  if (cu.sizes[0] != batch + 1) return invalid(name, std::to_string(batch + 1) + " entries", std::to_string(cu.sizes[0]));
  if (int_at(cu, 0) != 0) return invalid(name, "first entry 0", std::to_string(int_at(cu, 0)));
  for (int64_t b = 0; b < batch; ++b) {
    if (int_at(cu, b + 1) < int_at(cu, b)) return invalid(name, "non-decreasing entries", "a decrease at " + std::to_string(b + 1));
  }
  if (int_at(cu, batch) != total) return invalid(name, "last entry " + std::to_string(total), std::to_string(int_at(cu, batch)));
  return Status::Ok();
}

}  // namespace serving
}  // namespace cpu
}  // namespace hetero
