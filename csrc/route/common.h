// What the native route's kernels share (internal to csrc/route/): PyTorch's shim, the
// per-thread switches, the decision cache, the counters, and Operand, a tensor handle
// from the dispatcher's stack with its metadata.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "hetero/dtype.h"
#include "hetero/tensor_view.h"
#include "route/route.h"
#include "route/torch_shim.h"

namespace hetero::route {

extern TorchShim g_shim;
extern thread_local int t_ops;  // RoutedOp bits: what this thread routes
extern thread_local bool t_bypass;
extern thread_local int64_t t_scope;
extern thread_local bool t_uncounted;  // calibration's timing calls are not counted

// Whether a call of `op` on this thread is routed (else it goes straight to PyTorch's).
inline bool routing(RoutedOp op) { return (t_ops & op) != 0 && !t_bypass; }

int kernel_threads();  // HETERO_NUM_THREADS, else torch.get_num_threads()

// Everything hetero's dispatcher looks at for a call, as integers: the operator first
// (kOpMm, ...), then sizes, dtype, flags, layout, alignment; the scope is added.
constexpr int kKeyFields = 16;
using Key = std::array<int64_t, kKeyFields>;
enum OpCode : int64_t {
  kOpMm = 1, kOpBmm, kOpAttention, kOpAttentionBackward, kOpGemmCall, kOpScaledGemmCall,
  kOpPagedCall, kOpAttentionCall, kOpGemmOp, kOpAttentionOp
};

int64_t cached(const Key& key, bool* found);
void remember(const Key& key, int64_t decision);

// The decision for a call (counter * 4 + action), looked up under `bucketed` (its sizes
// rounded up to powers of two, negated so that they never match an exact key's), then
// under `exact`; on a miss `decide` asks Python, and an answer it marks kBucketWide is
// kept under `bucketed`, any other under `exact`.
template <typename Decide>
int64_t decision(const Key& exact, const Key& bucketed, Decide&& decide) {
  bool found = false;
  int64_t decided = cached(bucketed, &found);
  if (!found) decided = cached(exact, &found);
  if (found) return decided;
  decided = decide();
  const bool bucket_wide = (decided & kBucketWide) != 0;
  decided &= ~kBucketWide;
  remember(bucket_wide ? bucketed : exact, decided);
  return decided;
}

// -(the smallest power of two >= n), 0 for 0: a size's bucket in a bucketed key (the
// tuned table's hetero.tuned.pow2_ceil).
inline int64_t bucket_of(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return n <= 0 ? 0 : -p;
}

void count(int64_t counter, uint64_t flops);

// Raises a failed shim call as PyTorch's own error message (or, without one, `what`).
inline void check(ShimError error, const char* what) {
  if (error == 0) return;
  const std::string message = g_shim.exception_what != nullptr ? g_shim.exception_what() : "";
  throw std::runtime_error(message.empty() ? std::string("hetero: PyTorch's ") + what + " failed"
                                           : message);
}

// Owns one tensor handle and reads its metadata once.
struct Operand {
  AtenTensorHandle handle = nullptr;
  int64_t dim = 0;
  int64_t* sizes = nullptr;
  int64_t* strides = nullptr;
  int32_t dtype = 0;
  void* data = nullptr;

  Operand() = default;
  explicit Operand(StableIValue value) { reset(reinterpret_cast<AtenTensorHandle>(value)); }
  ~Operand() {
    if (handle != nullptr) g_shim.delete_tensor_object(handle);
  }
  Operand(const Operand&) = delete;
  Operand& operator=(const Operand&) = delete;

  void reset(AtenTensorHandle h) {
    handle = h;
    check(g_shim.get_dim(h, &dim), "aoti_torch_get_dim");
    check(g_shim.get_sizes(h, &sizes), "aoti_torch_get_sizes");
    check(g_shim.get_strides(h, &strides), "aoti_torch_get_strides");
    check(g_shim.get_dtype(h, &dtype), "aoti_torch_get_dtype");
    check(g_shim.get_data_ptr(h, &data), "aoti_torch_get_data_ptr");
  }
  AtenTensorHandle release() {
    AtenTensorHandle h = handle;
    handle = nullptr;
    return h;
  }
  StableIValue take() { return reinterpret_cast<StableIValue>(release()); }
  // A new reference, as the dispatcher consumes its inputs.
  StableIValue copy() const {
    AtenTensorHandle h = nullptr;
    check(g_shim.new_tensor_handle(handle, &h), "aoti_torch_new_tensor_handle");
    return reinterpret_cast<StableIValue>(h);
  }
  int64_t size(int64_t d) const { return sizes[d < 0 ? d + dim : d]; }
  int64_t stride(int64_t d) const { return strides[d < 0 ? d + dim : d]; }
  // The framework-free view hetero's kernels take (dtype already checked).
  TensorView view(DType as) const {
    TensorView v;
    v.data = data;
    v.dtype = as;
    v.ndim = static_cast<int32_t>(dim);
    for (int64_t d = 0; d < dim; ++d) {
      v.sizes[d] = sizes[d];
      v.strides[d] = strides[d];
    }
    return v;
  }
};

// A fresh tensor of PyTorch's `dtype` code on the CPU.
AtenTensorHandle empty(int64_t ndim, const int64_t* sizes, const int64_t* strides, int32_t dtype);

// hetero's dtype for a PyTorch code; false for one hetero's native kernels do not take.
bool hetero_dtype(int32_t code, DType* dtype);
// The same for the byte-coded dtypes (float8 formats, int8) of the scaled GEMM.
bool byte_coded_dtype(int32_t code, DType* dtype);
std::string dtype_name(int32_t code);
// Largest power of two (at most 16) dividing every pointer, as hetero's keys record it.
int64_t alignment(std::initializer_list<const void*> pointers);

// What an entry returning a tensor (hetero_route::gemm, ::scaled_gemm, ::paged_attention)
// returns for a call it leaves to the public function's Python path: an undefined tensor,
// None in Python.
AtenTensorHandle declined();
bool on_cpu(const Operand& t);
// A transposed view of row-major storage (w.t(), as F.linear passes the weight).
inline bool column_major(const Operand& t) { return t.stride(-2) == 1 && t.stride(-1) != 1; }

// Calls made while Python decides or runs go to PyTorch.
struct BypassScope {
  bool previous;
  BypassScope() : previous(t_bypass) { t_bypass = true; }
  ~BypassScope() { t_bypass = previous; }
  BypassScope(const BypassScope&) = delete;
  BypassScope& operator=(const BypassScope&) = delete;
};

// Calls the Python op `name` on `stack` (bypassed); raises its stashed error on failure.
void call_python(const char* name, StableIValue* stack);
// call_python for a decide op: its int result, or its stashed error raised when negative.
int64_t ask_python(const char* name, StableIValue* stack);
// A float, bool or int argument from the dispatcher's stack, and back.
template <typename T>
T unboxed(StableIValue value) {
  T v;
  std::memcpy(&v, &value, sizeof(v));
  return v;
}
template <typename T>
StableIValue boxed(T value) {
  StableIValue v = 0;
  std::memcpy(&v, &value, sizeof(value));
  return v;
}

// An optional argument from the stack: none, or the boxed value (freed here).
std::optional<StableIValue> optional_arg(StableIValue value);
// An optional tensor argument into `into`, left without a handle for None (autograd hands
// a saved None back as an undefined tensor, which counts as None too).
void take_optional_tensor(StableIValue value, Operand* into);

// The kernels each file registers: (aten overload name, kernel).
struct Registration {
  const char* name;
  BoxedKernel kernel;
};
extern const Registration kGemmKernels[4];
extern const Registration kGemmCall;  // hetero_route::gemm, registered for good (route.h)
extern const Registration kGemmOpCall;  // hetero_route::gemm_op, likewise
extern const Registration kScaledGemmCall;  // hetero_route::scaled_gemm, likewise
extern const Registration kPagedAttentionCall;  // hetero_route::paged_attention, likewise
extern const Registration kWriteKvCacheCall;    // hetero_route::write_kv_cache, likewise
extern const Registration kAttentionCall;       // hetero_route::attention, likewise
extern const Registration kAttentionOpCall;     // hetero_route::attention_op, likewise
extern const Registration kAttentionKernels[2];
extern const Registration kScaledKernels[4];

}  // namespace hetero::route
