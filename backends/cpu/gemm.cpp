// out = alpha * (a @ b) + beta * bias on the CPU: the simple, correct version.
//
// For every batch and every row i of out, a float32 accumulator row of length
// N collects sum_k a[i,k] * b[k,:]. The i-k-j order makes the innermost loop
// walk the accumulator with unit stride whatever the operands' strides are.
// The epilogue then computes alpha * acc + beta * bias in float32 and rounds
// once to out's dtype. Packing, SIMD and threads are a later, separate step.

#include "gemm.h"

#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <vector>

namespace hetero {
namespace cpu {
namespace {

// ------------------------------------------------------------------ kernel

// A 2-D strided slice of a view; strides in elements.
template <typename T>
struct Matrix {
  T* data;
  int64_t row_stride;
  int64_t col_stride;

  T& at(int64_t i, int64_t j) const { return data[i * row_stride + j * col_stride]; }
};

// bias is float32 or a's dtype. It is read only in the O(M*N) epilogue, so a
// run-time dtype switch there is cheaper than more template instantiations.
struct BiasMatrix {
  const void* data;  // null: no bias term at all
  DType dtype;
  int64_t row_stride;
  int64_t col_stride;

  float at(int64_t i, int64_t j) const {
    const int64_t off = i * row_stride + j * col_stride;
    switch (dtype) {
      case DType::float16: return to_float(static_cast<const Half*>(data)[off]);
      case DType::bfloat16: return to_float(static_cast<const BFloat16*>(data)[off]);
      default: return static_cast<const float*>(data)[off];
    }
  }
};

template <typename In, typename Out>
void gemm_2d(Matrix<const In> a, Matrix<const In> b, Matrix<Out> out, BiasMatrix bias, int64_t M,
             int64_t N, int64_t K, float alpha, float beta, float* acc) {
  for (int64_t i = 0; i < M; ++i) {
    if (K == 0) {
      for (int64_t j = 0; j < N; ++j) acc[j] = 0.0f;
    } else {
      // Seeding with the first product rather than adding it to 0 keeps the
      // sign of -0 products, so K == 1 is exactly an elementwise multiply.
      const float a0 = to_float(a.at(i, 0));
      for (int64_t j = 0; j < N; ++j) acc[j] = a0 * to_float(b.at(0, j));
      for (int64_t k = 1; k < K; ++k) {
        const float aik = to_float(a.at(i, k));
        for (int64_t j = 0; j < N; ++j) acc[j] += aik * to_float(b.at(k, j));
      }
    }
    for (int64_t j = 0; j < N; ++j) {
      float v = alpha * acc[j];
      if (bias.data != nullptr) v += beta * bias.at(i, j);
      out.at(i, j) = from_float<Out>(v);
    }
  }
}

// Walks the (already identical) batch dims of all operands in lockstep.
template <typename In, typename Out>
void gemm_batched(const TensorView& a, const TensorView& b, const TensorView& out,
                  const TensorView* bias, float alpha, float beta) {
  const int32_t nb = a.ndim - 2;
  const int64_t M = a.sizes[nb];
  const int64_t K = a.sizes[nb + 1];
  const int64_t N = b.sizes[nb + 1];
  int64_t batches = 1;
  for (int32_t d = 0; d < nb; ++d) batches *= a.sizes[d];

  std::vector<float> acc(static_cast<size_t>(N));
  for (int64_t flat = 0; flat < batches; ++flat) {
    int64_t off_a = 0, off_b = 0, off_out = 0, off_bias = 0;
    int64_t rem = flat;
    for (int32_t d = nb - 1; d >= 0; --d) {
      const int64_t idx = rem % a.sizes[d];
      rem /= a.sizes[d];
      off_a += idx * a.strides[d];
      off_b += idx * b.strides[d];
      off_out += idx * out.strides[d];
      if (bias != nullptr) off_bias += idx * bias->strides[d];
    }
    // With K == 0, a and b are empty and may legitimately be null: never
    // offset a null pointer.
    const In* a_base = K > 0 ? static_cast<const In*>(a.data) + off_a : nullptr;
    const In* b_base = K > 0 ? static_cast<const In*>(b.data) + off_b : nullptr;
    const Matrix<const In> am{a_base, a.strides[nb], a.strides[nb + 1]};
    const Matrix<const In> bm{b_base, b.strides[nb], b.strides[nb + 1]};
    const Matrix<Out> om{static_cast<Out*>(out.data) + off_out, out.strides[nb],
                         out.strides[nb + 1]};
    const BiasMatrix cm =
        bias == nullptr
            ? BiasMatrix{nullptr, DType::float32, 0, 0}
            : BiasMatrix{bias->element_ptr(off_bias), bias->dtype, bias->strides[nb],
                         bias->strides[nb + 1]};
    gemm_2d<In, Out>(am, bm, om, cm, M, N, K, alpha, beta, acc.data());
  }
}

// -------------------------------------------------------------- validation

std::string join(const int64_t* values, int32_t n) {
  std::string s = "(";
  for (int32_t d = 0; d < n; ++d) s += (d ? ", " : "") + std::to_string(values[d]);
  return s + (n == 1 ? ",)" : ")");
}

Status invalid(const char* name, const std::string& expected, const std::string& got) {
  return Status::InvalidArgument(std::string(name) + ": expected " + expected + ", got " + got);
}

// Checks one view on its own: everything that would make indexing it unsafe.
Status check_view(const TensorView& v, const char* name) {
  if (v.ndim < 2 || v.ndim > kMaxDims) {
    return invalid(name, "2 to " + std::to_string(kMaxDims) + " dims", std::to_string(v.ndim));
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

// Checks that v has a's ndim and batch sizes and trailing (rows, cols).
// (For b, cols is b's own N: only K is constrained there.)
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

Status validate(const TensorView& a, const TensorView& b, const TensorView& out,
                const TensorView* bias) {
  Status s;
  if (!(s = check_view(a, "a")).ok() || !(s = check_view(b, "b")).ok() ||
      !(s = check_view(out, "out")).ok() || (bias && !(s = check_view(*bias, "bias")).ok())) {
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

// ---------------------------------------------------------------- launcher

template <typename In>
void run(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
         float alpha, float beta) {
  if (out.dtype == DType::float32) {
    gemm_batched<In, float>(a, b, out, bias, alpha, beta);
  } else {
    gemm_batched<In, In>(a, b, out, bias, alpha, beta);
  }
}

Status gemm_impl(const TensorView& a, const TensorView& b, const TensorView& out,
                 const TensorView* bias, double alpha, double beta) {
  Status s = validate(a, b, out, bias);
  if (!s.ok()) return s;
  if (out.numel() == 0) return Status::Ok();  // M, N or a batch dim is 0

  // The contract is float32 arithmetic, so BLAS's "beta == 0 ignores C" rule
  // applies to beta as it will be used, i.e. after the cast.
  const float alpha_f = static_cast<float>(alpha);
  const float beta_f = static_cast<float>(beta);
  const TensorView* used_bias = beta_f != 0.0f ? bias : nullptr;

  switch (a.dtype) {
    case DType::float32: run<float>(a, b, out, used_bias, alpha_f, beta_f); break;
    case DType::float16: run<Half>(a, b, out, used_bias, alpha_f, beta_f); break;
    case DType::bfloat16: run<BFloat16>(a, b, out, used_bias, alpha_f, beta_f); break;
    default: return Status::Internal("gemm: dtype passed validation but has no kernel");
  }
  return Status::Ok();
}

}  // namespace

Status gemm(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
            double alpha, double beta) {
  // Only allocation can throw here (messages, the accumulator row).
  try {
    return gemm_impl(a, b, out, bias, alpha, beta);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("gemm: ") + e.what());
  } catch (...) {
    return Status::Internal("gemm: unknown C++ exception");
  }
}

}  // namespace cpu
}  // namespace hetero
