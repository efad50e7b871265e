// A non-owning, framework-free description of a strided tensor.
//
// This is what crosses from Python (or any host framework) into a kernel:
// a raw pointer plus sizes and strides, so no backend depends on libtorch.
#pragma once

#include <cstdint>

#include "hetero/dtype.h"

namespace hetero {

constexpr int32_t kMaxDims = 8;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::float32;
  int32_t ndim = 0;
  int64_t sizes[kMaxDims] = {};
  // In elements, not bytes (torch's convention). 0 means a broadcast dim.
  int64_t strides[kMaxDims] = {};

  // Assumes sizes were validated as non-negative.
  int64_t numel() const {
    int64_t n = 1;
    for (int32_t d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
  }

  // Address of the element `offset` elements (not bytes) past data.
  void* element_ptr(int64_t offset) const {
    return static_cast<char*>(data) + offset * element_size(dtype);
  }
};

}  // namespace hetero
