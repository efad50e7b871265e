#include "hetero/view_checks.h"

#include <limits>

namespace hetero {

std::string join(const int64_t* values, int32_t n) {
  std::string s = "(";
  for (int32_t d = 0; d < n; ++d) s += (d ? ", " : "") + std::to_string(values[d]);
  return s + (n == 1 ? ",)" : ")");
}

Status invalid(const char* name, const std::string& expected, const std::string& got) {
  return Status::InvalidArgument(std::string(name) + ": expected " + expected + ", got " + got);
}

Status check_num_threads(int num_threads) {
  if (num_threads >= 1) return Status::Ok();
  return invalid("num_threads", ">= 1", std::to_string(num_threads));
}

Status check_view(const TensorView& v, const char* name, int32_t min_dims) {
  if (v.ndim < min_dims || v.ndim > kMaxDims) {
    return invalid(name, std::to_string(min_dims) + " to " + std::to_string(kMaxDims) + " dims",
                   std::to_string(v.ndim));
  }
  if (!is_known(v.dtype)) {
    return invalid(name, "a known dtype code", std::to_string(static_cast<int32_t>(v.dtype)));
  }
  bool empty = false;
  for (int32_t d = 0; d < v.ndim; ++d) {
    if (v.sizes[d] < 0) return invalid(name, "sizes >= 0", join(v.sizes, v.ndim));
    if (v.strides[d] < 0) return invalid(name, "strides >= 0", join(v.strides, v.ndim));
    empty = empty || v.sizes[d] == 0;
  }
  if (empty) return Status::Ok();  // never dereferenced

  // Every element offset (and its byte offset) must fit in int64, so that
  // the kernel's index arithmetic cannot overflow.
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t count = 1, last = 0;
  for (int32_t d = 0; d < v.ndim; ++d) {
    const int64_t size = v.sizes[d], stride = v.strides[d];
    const bool count_overflows = count > kMax / size;
    const bool last_overflows = size > 1 && stride > (kMax - last) / (size - 1);
    if (count_overflows || last_overflows) {
      return invalid(name, "an element count and index range that fit int64",
                     "sizes " + join(v.sizes, v.ndim) + " strides " + join(v.strides, v.ndim));
    }
    count *= size;
    last += (size - 1) * stride;
  }
  const int64_t esize = element_size(v.dtype);
  if (last > kMax / esize) {
    return invalid(name, "a byte range that fits int64", "last element offset " + std::to_string(last));
  }
  if (v.data == nullptr) {
    return invalid(name, "a data pointer for " + std::to_string(count) + " elements", "null");
  }
  if (reinterpret_cast<uintptr_t>(v.data) % static_cast<uintptr_t>(esize) != 0) {
    return invalid(name, "data aligned to " + std::to_string(esize) + " bytes",
                   std::to_string(reinterpret_cast<uintptr_t>(v.data)));
  }
  return Status::Ok();
}

}  // namespace hetero
