// Validation shared by every native launcher (CPU and GPU): what makes a raw view unsafe to
// index, reported as a Status naming the argument.
#pragma once

#include <cstdint>
#include <string>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {

// "(2, 3)" for {2, 3}; "(5,)" for one value.
std::string join(const int64_t* values, int32_t n);

// "<name>: expected <expected>, got <got>" as InvalidArgument.
Status invalid(const char* name, const std::string& expected, const std::string& got);

// num_threads >= 1, as InvalidArgument naming it.
Status check_num_threads(int num_threads);

// A view of min_dims..kMaxDims dims with a known dtype, non-negative sizes and
// strides, an index range that fits int64 and, unless empty, an aligned
// non-null pointer.
Status check_view(const TensorView& v, const char* name, int32_t min_dims);

}  // namespace hetero
