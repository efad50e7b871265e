#include "hetero/gemm_args.h"

#include <string>

#include "hetero/view_checks.h"

namespace hetero {
namespace {

// Checks that v has a's ndim and batch sizes and trailing (rows, cols).
Status check_shape(const TensorView& v, const char* name, const TensorView& a, int64_t rows,
                   int64_t cols, const char* what) {
  if (v.ndim != a.ndim) {
    return invalid(name, std::to_string(a.ndim) + " dims (like a)", std::to_string(v.ndim));
  }
  const int32_t nb = a.ndim - 2;
  for (int32_t d = 0; d < nb; ++d) {
    if (v.sizes[d] != a.sizes[d]) {
      return invalid(name, "batch sizes " + join(a.sizes, nb) + " (like a)", join(v.sizes, nb));
    }
  }
  if (v.sizes[nb] != rows || v.sizes[nb + 1] != cols) {
    const int64_t want[2] = {rows, cols};
    return invalid(name, std::string("trailing sizes ") + what + " = " + join(want, 2),
                   join(v.sizes + nb, 2));
  }
  return Status::Ok();
}

Status check_dtype(const TensorView& v, const char* name, DType in) {
  if (v.dtype == in || v.dtype == DType::float32) return Status::Ok();
  return Status::Unsupported(std::string(name) + ": expected dtype " + dtype_name(in) +
                             " or float32, got " + dtype_name(v.dtype));
}

}  // namespace

Status validate_gemm(const TensorView& a, const TensorView& b, const TensorView& out,
                const TensorView* bias) {
  Status s;
  if (!(s = check_view(a, "a", 2)).ok() || !(s = check_view(b, "b", 2)).ok() ||
      !(s = check_view(out, "out", 2)).ok() || (bias && !(s = check_view(*bias, "bias", 2)).ok())) {
    return s;
  }
  if (a.dtype != DType::float32 && a.dtype != DType::float16 && a.dtype != DType::bfloat16) {
    return Status::Unsupported(std::string("a: expected dtype float32, float16 or bfloat16, got ") +
                               dtype_name(a.dtype));
  }
  if (b.dtype != a.dtype) {
    return Status::Unsupported(std::string("b: expected dtype ") + dtype_name(a.dtype) +
                               " (same as a), got " + dtype_name(b.dtype));
  }
  if (!(s = check_dtype(out, "out", a.dtype)).ok() ||
      (bias && !(s = check_dtype(*bias, "bias", a.dtype)).ok())) {
    return s;
  }
  const int32_t nb = a.ndim - 2;
  const int64_t M = a.sizes[nb], K = a.sizes[nb + 1];
  const int64_t N = b.ndim == a.ndim ? b.sizes[nb + 1] : 0;
  if (!(s = check_shape(b, "b", a, K, N, "(K, N)")).ok() ||
      !(s = check_shape(out, "out", a, M, N, "(M, N)")).ok() ||
      (bias && !(s = check_shape(*bias, "bias", a, M, N, "(M, N)")).ok())) {
    return s;
  }
  return Status::Ok();
}

}  // namespace hetero
