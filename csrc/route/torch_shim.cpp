#include "route/torch_shim.h"

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#define HETERO_HAS_DLSYM 1
#endif

namespace hetero::route {

#ifdef HETERO_HAS_DLSYM
namespace {

template <typename Fn>
bool find(void* library, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(library, name));
  if (*fn == nullptr) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  return *fn != nullptr;
}

int32_t code(void* library, const char* name, std::string* missing) {
  int32_t (*fn)() = nullptr;
  return find(library, name, &fn, missing) ? fn() : -1;
}

}  // namespace

std::string load_torch_shim(const std::string& path, TorchShim* shim) {
  // RTLD_NOLOAD: only a library torch has loaded already (never a second copy).
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) return "libtorch is not loaded from " + path;
  std::string missing;
  find(library, "aoti_torch_library_init_impl", &shim->library_init_impl, &missing);
  find(library, "aoti_torch_library_impl", &shim->library_impl, &missing);
  find(library, "aoti_torch_delete_library_object", &shim->delete_library_object, &missing);
  find(library, "aoti_torch_call_dispatcher", &shim->call_dispatcher, &missing);
  find(library, "aoti_torch_new_tensor_handle", &shim->new_tensor_handle, &missing);
  find(library, "aoti_torch_delete_tensor_object", &shim->delete_tensor_object, &missing);
  find(library, "aoti_torch_get_data_ptr", &shim->get_data_ptr, &missing);
  find(library, "aoti_torch_get_dim", &shim->get_dim, &missing);
  find(library, "aoti_torch_get_sizes", &shim->get_sizes, &missing);
  find(library, "aoti_torch_get_strides", &shim->get_strides, &missing);
  find(library, "aoti_torch_get_dtype", &shim->get_dtype, &missing);
  find(library, "aoti_torch_is_defined", &shim->is_defined, &missing);
  find(library, "aoti_torch_get_device_type", &shim->get_device_type, &missing);
  find(library, "aoti_torch_new_uninitialized_tensor", &shim->new_uninitialized_tensor, &missing);
  find(library, "aoti_torch_empty_strided", &shim->empty_strided, &missing);
  find(library, "aoti_torch_cpu_mm_out", &shim->cpu_mm_out, &missing);
  find(library, "aoti_torch_cpu_bmm_out", &shim->cpu_bmm_out, &missing);
  find(library, "aoti_torch_cpu__scaled_dot_product_flash_attention_for_cpu",
       &shim->cpu_flash_attention, &missing);
  find(library, "aoti_torch_cpu__scaled_dot_product_flash_attention_for_cpu_backward",
       &shim->cpu_flash_attention_backward, &missing);
  find(library, "aoti_torch_cpu__int_mm_out", &shim->cpu_int_mm_out, &missing);
  find(library, "aoti_torch_cpu__scaled_mm", &shim->cpu_scaled_mm, &missing);
  find(library, "aoti_torch_cpu__scaled_mm_out", &shim->cpu_scaled_mm_out, &missing);
  find(library, "aoti_torch_copy_", &shim->copy_, &missing);
  shim->delete_stable_ivalue =  // optional: older torch frees these with delete
      reinterpret_cast<decltype(shim->delete_stable_ivalue)>(dlsym(library, "torch_delete_stable_ivalue"));
  find(library, "_ZN2at15get_num_threadsEv", &shim->get_num_threads, &missing);
  shim->exception_what = reinterpret_cast<decltype(shim->exception_what)>(dlsym(
      library, "_ZN5torch4csrc4shim7details42get_torch_exception_what_without_backtraceB5cxx11Ev"));
  shim->float32 = code(library, "aoti_torch_dtype_float32", &missing);
  shim->float16 = code(library, "aoti_torch_dtype_float16", &missing);
  shim->bfloat16 = code(library, "aoti_torch_dtype_bfloat16", &missing);
  shim->float64 = code(library, "aoti_torch_dtype_float64", &missing);
  shim->int32 = code(library, "aoti_torch_dtype_int32", &missing);
  shim->int64 = code(library, "aoti_torch_dtype_int64", &missing);
  shim->boolean = code(library, "aoti_torch_dtype_bool", &missing);
  shim->cpu = code(library, "aoti_torch_device_type_cpu", &missing);
  std::string optional;  // without them only hetero.scaled_gemm's native entry declines
  shim->float8_e4m3fn = code(library, "aoti_torch_dtype_float8_e4m3fn", &optional);
  shim->float8_e5m2 = code(library, "aoti_torch_dtype_float8_e5m2", &optional);
  shim->float8_e4m3fnuz = code(library, "aoti_torch_dtype_float8_e4m3fnuz", &optional);
  shim->float8_e5m2fnuz = code(library, "aoti_torch_dtype_float8_e5m2fnuz", &optional);
  shim->int8 = code(library, "aoti_torch_dtype_int8", &optional);
  dlclose(library);  // drops only the reference RTLD_NOLOAD took; torch stays loaded
  return missing.empty() ? "" : "this libtorch lacks " + missing;
}

#else

std::string load_torch_shim(const std::string&, TorchShim*) {
  return "the native route looks libtorch up with dlsym, which this platform lacks";
}

#endif

}  // namespace hetero::route
