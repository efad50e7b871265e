// aten::_scaled_mm and aten::_int_mm (and their .out forms) on the CPU, while the native
// route is installed (route.h). These are heavy calls (a decoded weight per call), so a
// routed one goes to Python, hetero_route::run_scaled_mm / run_int_mm, which serves it on
// hetero's scaled GEMM through the function mode's routes or hands it back to PyTorch
// (counted either way); calls not routed run PyTorch's kernel directly.
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

}  // namespace

const Registration kScaledKernels[4] = {{"_int_mm", int_mm},
                                        {"_int_mm.out", int_mm_out},
                                        {"_scaled_mm", scaled_mm},
                                        {"_scaled_mm.out", scaled_mm_out}};

}  // namespace hetero::route
