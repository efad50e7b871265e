// The few functions of PyTorch's stable C shim (torch/csrc/inductor/aoti_torch/c/shim.h
// and c_shim_cpu.h) the native route uses, looked up at run time in the libtorch the
// process has already loaded.
//
// Looking them up instead of linking keeps hetero's build free of torch (pip's isolated
// build has none) and ties it to no torch version: these are C functions PyTorch keeps
// stable across releases. The declarations below mirror those headers; nothing here
// includes a torch header.
#pragma once

#include <cstdint>
#include <string>

namespace hetero::route {

using AtenTensorHandle = void*;  // an owned reference to an at::Tensor
using StableIValue = uint64_t;   // one boxed argument or result
using ShimError = int32_t;       // AOTITorchError: 0 on success
using BoxedKernel = void (*)(StableIValue* stack, uint64_t num_args, uint64_t num_outputs);

struct TorchShim {
  // torch::Library for implementations of an existing namespace, on one dispatch key.
  ShimError (*library_init_impl)(const char* ns, const char* key, const char* file, uint32_t line,
                                 void** library);
  ShimError (*library_impl)(void* library, const char* name, BoxedKernel kernel);
  ShimError (*delete_library_object)(void* library);
  // Calls an operator through the dispatcher; inputs are consumed, outputs land at stack[0..].
  ShimError (*call_dispatcher)(const char* name, const char* overload, StableIValue* stack);

  ShimError (*new_tensor_handle)(AtenTensorHandle tensor, AtenTensorHandle* copy);
  ShimError (*delete_tensor_object)(AtenTensorHandle tensor);
  ShimError (*get_data_ptr)(AtenTensorHandle tensor, void** data);
  ShimError (*get_dim)(AtenTensorHandle tensor, int64_t* dim);
  ShimError (*get_sizes)(AtenTensorHandle tensor, int64_t** sizes);      // borrowed
  ShimError (*get_strides)(AtenTensorHandle tensor, int64_t** strides);  // borrowed, elements
  ShimError (*get_dtype)(AtenTensorHandle tensor, int32_t* dtype);
  ShimError (*is_defined)(AtenTensorHandle tensor, bool* defined);
  ShimError (*get_device_type)(AtenTensorHandle tensor, int32_t* device_type);
  ShimError (*new_uninitialized_tensor)(AtenTensorHandle* tensor);  // an undefined tensor
  ShimError (*empty_strided)(int64_t ndim, const int64_t* sizes, const int64_t* strides,
                             int32_t dtype, int32_t device_type, int32_t device_index,
                             AtenTensorHandle* tensor);

  // PyTorch's own CPU kernels, called directly (not through the dispatcher).
  ShimError (*cpu_mm_out)(AtenTensorHandle out, AtenTensorHandle a, AtenTensorHandle b);
  ShimError (*cpu_bmm_out)(AtenTensorHandle out, AtenTensorHandle a, AtenTensorHandle b);

  ShimError (*cpu_flash_attention)(AtenTensorHandle q, AtenTensorHandle k, AtenTensorHandle v,
                                   double dropout_p, int32_t is_causal, AtenTensorHandle* mask,
                                   double* scale, AtenTensorHandle* out, AtenTensorHandle* lse);
  ShimError (*cpu_flash_attention_backward)(AtenTensorHandle dout, AtenTensorHandle q,
                                            AtenTensorHandle k, AtenTensorHandle v,
                                            AtenTensorHandle out, AtenTensorHandle lse,
                                            double dropout_p, int32_t is_causal,
                                            AtenTensorHandle* mask, double* scale,
                                            AtenTensorHandle* dq, AtenTensorHandle* dk,
                                            AtenTensorHandle* dv);
  ShimError (*cpu_int_mm_out)(AtenTensorHandle out, AtenTensorHandle a, AtenTensorHandle b);
  ShimError (*cpu_scaled_mm)(AtenTensorHandle a, AtenTensorHandle b, AtenTensorHandle scale_a,
                             AtenTensorHandle scale_b, AtenTensorHandle* bias,
                             AtenTensorHandle* scale_result, int32_t* out_dtype,
                             int32_t use_fast_accum, AtenTensorHandle* out);
  ShimError (*cpu_scaled_mm_out)(AtenTensorHandle out, AtenTensorHandle a, AtenTensorHandle b,
                                 AtenTensorHandle scale_a, AtenTensorHandle scale_b,
                                 AtenTensorHandle* bias, AtenTensorHandle* scale_result,
                                 int32_t* out_dtype, int32_t use_fast_accum);
  ShimError (*copy_)(AtenTensorHandle into, AtenTensorHandle from, int32_t non_blocking);
  // Frees the boxed value an optional argument points to (torch >= 2.13; else `delete`).
  ShimError (*delete_stable_ivalue)(StableIValue* value);

  int (*get_num_threads)();  // at::get_num_threads(), as torch.get_num_threads() reads it
  // The message of the exception the last failing shim call caught on this thread (a C++
  // function of the shim's; optional: without it a failure says which call failed).
  const std::string& (*exception_what)();

  // Codes of the dtypes (c10::ScalarType) and of the CPU device type; the byte-coded
  // ones -1 where this libtorch has none.
  int32_t float32 = -1, float16 = -1, bfloat16 = -1, float64 = -1, int32 = -1, int64 = -1, boolean = -1;
  int32_t float8_e4m3fn = -1, float8_e5m2 = -1, float8_e4m3fnuz = -1, float8_e5m2fnuz = -1,
          int8 = -1;
  int32_t cpu = -1;
};

// Fills `shim` from the loaded library at `path`; returns "" or why it cannot.
std::string load_torch_shim(const std::string& path, TorchShim* shim);

}  // namespace hetero::route
