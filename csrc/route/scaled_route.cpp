// Scaled GEMM calls:
// - aten::_scaled_mm and aten::_int_mm (and their .out forms) on the CPU, while the native
//   route is installed (route.h). A routed one goes to Python, hetero_route::run_scaled_mm /
//   run_int_mm, which serves it on hetero's scaled GEMM through the function mode's routes
//   or hands it back to PyTorch (counted either way); calls not routed run PyTorch's kernel
//   directly.
// - hetero_route::scaled_gemm, hetero.scaled_gemm's common case (see scaled_gemm_call).
#include <algorithm>

#include "backends/cpu/scaled_gemm.h"
#include "route/common.h"

namespace hetero::route {
namespace {

void copy_into(AtenTensorHandle out, AtenTensorHandle result) {
  const ShimError error = g_shim.copy_(out, result, 0);
  g_shim.delete_tensor_object(result);
  check(error, "aoti_torch_copy_");
}

// ---------------------------------------------------------------- _int_mm
void int_mm_run(StableIValue* stack, bool has_out) {
  Operand a(stack[0]), b(stack[1]);
  AtenTensorHandle out = has_out ? reinterpret_cast<AtenTensorHandle>(stack[2]) : nullptr;
  if (routing(kRouteScaled)) {
    StableIValue args[2] = {a.copy(), b.copy()};
    call_python("hetero_route::run_int_mm", args);
    auto result = reinterpret_cast<AtenTensorHandle>(args[0]);
    if (out == nullptr) {
      stack[0] = args[0];
    } else {
      copy_into(out, result);
      stack[0] = reinterpret_cast<StableIValue>(out);
    }
    return;
  }
  if (out == nullptr) {  // (M, N), or empty where PyTorch's kernel is about to refuse the call
    const bool matrices = a.dim == 2 && b.dim == 2;
    const int64_t sizes[2] = {matrices ? a.sizes[0] : 0, matrices ? b.sizes[1] : 0};
    const int64_t strides[2] = {sizes[1], 1};
    out = empty(2, sizes, strides, g_shim.int32);
  }
  const ShimError error = g_shim.cpu_int_mm_out(out, a.handle, b.handle);
  if (error != 0 && !has_out) g_shim.delete_tensor_object(out);
  check(error, "CPU kernel of aten::_int_mm");
  stack[0] = reinterpret_cast<StableIValue>(out);
}

void int_mm(StableIValue* stack, uint64_t, uint64_t) { int_mm_run(stack, false); }
void int_mm_out(StableIValue* stack, uint64_t, uint64_t) { int_mm_run(stack, true); }

// ---------------------------------------------------------------- _scaled_mm
void scaled_mm_run(StableIValue* stack, bool has_out) {
  Operand a(stack[0]), b(stack[1]), scale_a(stack[2]), scale_b(stack[3]), bias, scale_result;
  take_optional_tensor(stack[4], &bias);
  take_optional_tensor(stack[5], &scale_result);
  std::optional<int32_t> out_dtype;
  if (auto d = optional_arg(stack[6])) out_dtype = static_cast<int32_t>(*d);
  int32_t fast_accum;
  std::memcpy(&fast_accum, &stack[7], sizeof(fast_accum));
  const bool use_fast_accum = (fast_accum & 0xff) != 0;  // a bool in the leading byte
  AtenTensorHandle out = has_out ? reinterpret_cast<AtenTensorHandle>(stack[8]) : nullptr;
  if (routing(kRouteScaled)) {
    // Python takes no optionals from here: absent tensors travel as `a` with a flag, the
    // out dtype as an empty tensor of it.
    AtenTensorHandle dtype_probe = nullptr;
    if (out_dtype) {
      const int64_t zero = 0, one = 1;
      dtype_probe = empty(1, &zero, &one, *out_dtype);
    }
    StableIValue args[11] = {a.copy(), b.copy(), scale_a.copy(), scale_b.copy(),
                             bias.handle != nullptr ? bias.copy() : a.copy(),
                             boxed(bias.handle != nullptr),
                             scale_result.handle != nullptr ? scale_result.copy() : a.copy(),
                             boxed(scale_result.handle != nullptr),
                             dtype_probe != nullptr ? reinterpret_cast<StableIValue>(dtype_probe)
                                                    : a.copy(),
                             boxed(dtype_probe != nullptr), boxed(use_fast_accum)};
    call_python("hetero_route::run_scaled_mm", args);
    if (out == nullptr) {
      stack[0] = args[0];
    } else {
      copy_into(out, reinterpret_cast<AtenTensorHandle>(args[0]));
      stack[0] = reinterpret_cast<StableIValue>(out);
    }
    return;
  }
  AtenTensorHandle bias_handle = bias.handle, scale_result_handle = scale_result.handle;
  int32_t dtype_code = out_dtype.value_or(0);
  if (out == nullptr) {
    check(g_shim.cpu_scaled_mm(a.handle, b.handle, scale_a.handle, scale_b.handle,
                               bias_handle != nullptr ? &bias_handle : nullptr,
                               scale_result_handle != nullptr ? &scale_result_handle : nullptr,
                               out_dtype ? &dtype_code : nullptr, use_fast_accum, &out),
          "CPU kernel of aten::_scaled_mm");
  } else {
    check(g_shim.cpu_scaled_mm_out(out, a.handle, b.handle, scale_a.handle, scale_b.handle,
                                   bias_handle != nullptr ? &bias_handle : nullptr,
                                   scale_result_handle != nullptr ? &scale_result_handle : nullptr,
                                   out_dtype ? &dtype_code : nullptr, use_fast_accum),
          "CPU kernel of aten::_scaled_mm.out");
  }
  stack[0] = reinterpret_cast<StableIValue>(out);
}

void scaled_mm(StableIValue* stack, uint64_t, uint64_t) { scaled_mm_run(stack, false); }
void scaled_mm_out(StableIValue* stack, uint64_t, uint64_t) { scaled_mm_run(stack, true); }

// ---------------------------------------------------------------- hetero.scaled_gemm
// hetero_route::scaled_gemm(Tensor a, Tensor b, Tensor? scale_a, Tensor? scale_b) -> Tensor:
// hetero.scaled_gemm's common case (two CPU matrices of one byte-coded dtype, float32
// tensor-wise or row-wise scales, no bias, a fresh bfloat16 result; or int8 without
// scales into a fresh int32 result, torch._int_mm's call) without Python. A
// decode-shaped call streams its weight once in a few hundred microseconds, and the
// Python path's checks and dispatch, run with the interpreter's data just evicted by that
// stream, took a tenth of it. The cached decision runs cpu::scaled_gemm; anything else
// (another recipe, kernel, dtype or device, bad input) is declined, and
// hetero.scaled_gemm's Python path checks, names what is wrong and dispatches.

int64_t elements(const Operand& t) {
  int64_t n = 1;
  for (int64_t d = 0; d < t.dim; ++d) n *= t.sizes[d];
  return n;
}

// The recipe the scales' shapes name, tensor-wise first as hetero.ops.scaled_gemm.api's
// _recipe takes it where a tiny shape fits both; -1 for any other (block-wise included).
// kUnscaled: no scales (int8 sums into int32), a key's value only.
constexpr int kUnscaled = 3;
int recipe_of(const Operand& sa, const Operand& sb, int64_t m, int64_t n) {
  if (sa.handle == nullptr && sb.handle == nullptr) return kUnscaled;
  if (sa.handle == nullptr || sb.handle == nullptr) return -1;
  if (sa.dim <= 2 && sb.dim <= 2 && elements(sa) == 1 && elements(sb) == 1) {
    return static_cast<int>(cpu::ScaleRecipe::tensor);
  }
  if (sa.dim == 2 && sb.dim == 2 && sa.sizes[0] == m && sa.sizes[1] == 1 && sb.sizes[0] == 1 &&
      sb.sizes[1] == n) {
    return static_cast<int>(cpu::ScaleRecipe::row);
  }
  return -1;
}

// A scale as the kernel reads it: 2-D, one element broadcast for the tensor-wise recipe.
TensorView scale_view(const Operand& s, cpu::ScaleRecipe recipe) {
  TensorView v = s.view(DType::float32);
  if (recipe == cpu::ScaleRecipe::tensor) {
    v.ndim = 2;
    v.sizes[0] = v.sizes[1] = 1;
    v.strides[0] = v.strides[1] = 0;
  }
  return v;
}

AtenTensorHandle scaled_gemm_result(const Operand& a, const Operand& b, const Operand& sa,
                                    const Operand& sb) {
  DType dtype;
  if (a.dim != 2 || b.dim != 2 || a.sizes[1] != b.sizes[0] || a.dtype != b.dtype ||
      !byte_coded_dtype(a.dtype, &dtype) || !on_cpu(a) || !on_cpu(b)) {
    return declined();
  }
  const int64_t m = a.sizes[0], n = b.sizes[1], k = a.sizes[1];
  const int recipe = recipe_of(sa, sb, m, n);
  const bool scaled = recipe != kUnscaled;
  if (recipe < 0 || (!scaled && dtype != DType::int8) ||
      (scaled && (sa.dtype != g_shim.float32 || sb.dtype != g_shim.float32 || !on_cpu(sa) ||
                  !on_cpu(sb)))) {
    return declined();
  }
  const Key key{kOpScaledGemmCall, recipe, m, n, k, a.dtype, 2 * column_major(a) + column_major(b),
                alignment({a.data, b.data})};
  Key bucketed = key;
  for (int field = 2; field <= 4; ++field) bucketed[field] = bucket_of(key[field]);
  const int64_t action = decision(key, bucketed, [&] {
    // absent scales travel as `a`, with the flag
    StableIValue args[5] = {a.copy(), b.copy(), scaled ? sa.copy() : a.copy(),
                            scaled ? sb.copy() : a.copy(), boxed(scaled)};
    return ask_python("hetero_route::decide_scaled_gemm_call", args);
  }) & 3;
  if (action != kNative) return declined();
  const int64_t sizes[2] = {m, n}, strides[2] = {n, 1};
  AtenTensorHandle out = empty(2, sizes, strides, scaled ? g_shim.bfloat16 : g_shim.int32);
  void* out_data = nullptr;
  const ShimError error = g_shim.get_data_ptr(out, &out_data);
  TensorView out_view;
  out_view.data = out_data;
  out_view.dtype = scaled ? DType::bfloat16 : DType::int32;
  out_view.ndim = 2;
  std::copy(sizes, sizes + 2, out_view.sizes);
  std::copy(strides, strides + 2, out_view.strides);
  const auto how = scaled ? static_cast<cpu::ScaleRecipe>(recipe) : cpu::ScaleRecipe::tensor;
  TensorView scale_a, scale_b;
  if (scaled) scale_a = scale_view(sa, how), scale_b = scale_view(sb, how);
  if (error != 0 || !cpu::scaled_gemm(a.view(dtype), b.view(dtype), scaled ? &scale_a : nullptr,
                                      scaled ? &scale_b : nullptr, how, nullptr, out_view,
                                      kernel_threads())
                         .ok()) {
    g_shim.delete_tensor_object(out);
    return declined();  // the Python path reports what the kernel refused
  }
  return out;
}

void scaled_gemm_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand a(stack[0]), b(stack[1]), sa, sb;
  take_optional_tensor(stack[2], &sa);
  take_optional_tensor(stack[3], &sb);
  stack[0] = reinterpret_cast<StableIValue>(scaled_gemm_result(a, b, sa, sb));
}

}  // namespace

const Registration kScaledGemmCall = {"scaled_gemm", scaled_gemm_call};

const Registration kScaledKernels[4] = {{"_int_mm", int_mm},
                                        {"_int_mm.out", int_mm_out},
                                        {"_scaled_mm", scaled_mm},
                                        {"_scaled_mm.out", scaled_mm_out}};

}  // namespace hetero::route
