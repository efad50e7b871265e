// See route.h: the state, the decision cache and counters, and the public surface. The
// kernels are in gemm_route.cpp, attention_route.cpp, scaled_route.cpp and, for the public
// functions' entries, paged_route.cpp too.
#include "route/route.h"

#include <atomic>
#include <iterator>
#include <mutex>
#include <unordered_map>

#include "route/common.h"

namespace hetero::route {

TorchShim g_shim;
thread_local int t_ops = 0;
thread_local bool t_bypass = false;
thread_local int64_t t_scope = 0;
thread_local bool t_uncounted = false;

namespace {

bool g_loaded = false;
void* g_library = nullptr;  // the torch::Library holding the kernels while installed
int g_installs = 0;
std::mutex g_install_mutex;
int g_num_threads = 0;
std::string (*g_error_reader)() = nullptr;

struct Counter {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> flops{0};
};
Counter g_counters[kMaxCounters];

struct KeyHash {
  size_t operator()(const Key& key) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (int64_t v : key) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return h;
  }
};

std::mutex g_cache_mutex;
std::unordered_map<Key, int64_t, KeyHash> g_cache;  // -> counter * 4 + action
constexpr size_t kMaxDecisions = 4096;               // a model has a few hundred

}  // namespace

// ---------------------------------------------------------------- shared helpers
int kernel_threads() { return g_num_threads > 0 ? g_num_threads : g_shim.get_num_threads(); }

int64_t cached(const Key& key, bool* found) {
  Key scoped = key;
  scoped[kKeyFields - 1] = t_scope;
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto it = g_cache.find(scoped);
  *found = it != g_cache.end();
  return *found ? it->second : 0;
}

void remember(const Key& key, int64_t decision) {
  Key scoped = key;
  scoped[kKeyFields - 1] = t_scope;
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (g_cache.size() >= kMaxDecisions) g_cache.clear();
  g_cache.emplace(scoped, decision);
}

void count(int64_t counter, uint64_t flops) {
  if (counter < 0 || counter >= kMaxCounters || t_uncounted) return;  // not counted natively
  g_counters[counter].calls.fetch_add(1, std::memory_order_relaxed);
  g_counters[counter].flops.fetch_add(flops, std::memory_order_relaxed);
}

AtenTensorHandle empty(int64_t ndim, const int64_t* sizes, const int64_t* strides, int32_t dtype) {
  AtenTensorHandle out = nullptr;
  check(g_shim.empty_strided(ndim, sizes, strides, dtype, g_shim.cpu, 0, &out),
        "aoti_torch_empty_strided");
  return out;
}

bool hetero_dtype(int32_t code, DType* dtype) {
  if (code == g_shim.float32) *dtype = DType::float32;
  else if (code == g_shim.float16) *dtype = DType::float16;
  else if (code == g_shim.bfloat16) *dtype = DType::bfloat16;
  else return false;
  return true;
}

bool byte_coded_dtype(int32_t code, DType* dtype) {
  if (code < 0) return false;  // a dtype this libtorch lacks
  if (code == g_shim.float8_e4m3fn) *dtype = DType::float8_e4m3fn;
  else if (code == g_shim.float8_e5m2) *dtype = DType::float8_e5m2;
  else if (code == g_shim.float8_e4m3fnuz) *dtype = DType::float8_e4m3fnuz;
  else if (code == g_shim.float8_e5m2fnuz) *dtype = DType::float8_e5m2fnuz;
  else if (code == g_shim.int8) *dtype = DType::int8;
  else return false;
  return true;
}

AtenTensorHandle declined() {
  AtenTensorHandle none = nullptr;
  check(g_shim.new_uninitialized_tensor(&none), "aoti_torch_new_uninitialized_tensor");
  return none;
}

bool on_cpu(const Operand& t) {
  int32_t type = -1;
  check(g_shim.get_device_type(t.handle, &type), "aoti_torch_get_device_type");
  return type == g_shim.cpu;
}

std::string dtype_name(int32_t code) {  // as PyTorch's messages name them
  if (code == g_shim.float32) return "float";
  if (code == g_shim.float64) return "double";
  if (code == g_shim.float16) return "c10::Half";
  if (code == g_shim.bfloat16) return "c10::BFloat16";
  return "dtype " + std::to_string(code);
}

int64_t alignment(std::initializer_list<const void*> pointers) {
  uintptr_t bits = 16;
  for (const void* p : pointers) bits |= reinterpret_cast<uintptr_t>(p);
  return static_cast<int64_t>(bits & (~bits + 1));
}

std::optional<StableIValue> optional_arg(StableIValue value) {
  auto* boxed_value = reinterpret_cast<StableIValue*>(value);
  if (boxed_value == nullptr) return std::nullopt;
  const StableIValue inner = *boxed_value;
  if (g_shim.delete_stable_ivalue != nullptr) g_shim.delete_stable_ivalue(boxed_value);
  else delete boxed_value;
  return inner;
}

void take_optional_tensor(StableIValue value, Operand* into) {
  const auto inner = optional_arg(value);
  if (!inner) return;
  auto handle = reinterpret_cast<AtenTensorHandle>(*inner);
  bool defined = false;
  check(g_shim.is_defined(handle, &defined), "aoti_torch_is_defined");
  if (defined) into->reset(handle);
  else g_shim.delete_tensor_object(handle);
}

namespace {

[[noreturn]] void raise_python_error(const char* name) {
  std::string message = g_error_reader != nullptr ? g_error_reader() : "";
  throw std::runtime_error(message.empty() ? std::string("hetero: ") + name + " failed" : message);
}

}  // namespace

void call_python(const char* name, StableIValue* stack) {
  BypassScope bypass;
  if (g_shim.call_dispatcher(name, "", stack) != 0) raise_python_error(name);
}

int64_t ask_python(const char* name, StableIValue* stack) {
  call_python(name, stack);
  const int64_t answer = unboxed<int64_t>(stack[0]);
  if (answer < 0) raise_python_error(name);
  return answer;
}

// ---------------------------------------------------------------- the public surface
std::string load(const std::string& libtorch_path) {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (g_loaded) return "";
  TorchShim shim;
  std::string why = load_torch_shim(libtorch_path, &shim);
  if (why.empty()) {
    g_shim = shim;
    g_loaded = true;
  }
  return why;
}

bool loaded() { return g_loaded; }

void install() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (!g_loaded) throw std::runtime_error("hetero: the native route is not loaded");
  if (g_installs++ > 0) return;
  void* library = nullptr;
  bool ok = g_shim.library_init_impl("aten", "CPU", __FILE__, __LINE__, &library) == 0;
  std::vector<Registration> kernels(std::begin(kGemmKernels), std::end(kGemmKernels));
  kernels.insert(kernels.end(), std::begin(kAttentionKernels), std::end(kAttentionKernels));
  kernels.insert(kernels.end(), std::begin(kScaledKernels), std::end(kScaledKernels));
  for (const Registration& r : kernels) ok = ok && g_shim.library_impl(library, r.name, r.kernel) == 0;
  if (!ok) {
    if (library != nullptr) g_shim.delete_library_object(library);
    g_installs = 0;
    throw std::runtime_error("hetero: registering the native route's kernels with PyTorch failed");
  }
  g_library = library;
}

void uninstall() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (g_installs == 0 || --g_installs > 0) return;
  g_shim.delete_library_object(g_library);  // PyTorch's own kernels are back
  g_library = nullptr;
}

int installs() { return g_installs; }

void register_entry_calls() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  static void* library = nullptr;  // kept until the process ends
  if (library != nullptr) return;
  if (!g_loaded) throw std::runtime_error("hetero: the native route is not loaded");
  // CompositeExplicitAutograd: one kernel for every device (it declines what is not CPU),
  // below autograd and below fake tensors, which never reach it.
  void* made = nullptr;
  bool ok = g_shim.library_init_impl("hetero_route", "CompositeExplicitAutograd", __FILE__,
                                     __LINE__, &made) == 0;
  ok = ok && g_shim.library_impl(made, kGemmCall.name, kGemmCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kGemmOpCall.name, kGemmOpCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kScaledGemmCall.name, kScaledGemmCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kPagedAttentionCall.name, kPagedAttentionCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kWriteKvCacheCall.name, kWriteKvCacheCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kAttentionCall.name, kAttentionCall.kernel) == 0;
  ok = ok && g_shim.library_impl(made, kAttentionOpCall.name, kAttentionOpCall.kernel) == 0;
  if (!ok) {
    if (made != nullptr) g_shim.delete_library_object(made);
    throw std::runtime_error(
        "hetero: registering hetero_route::gemm, ::gemm_op, ::scaled_gemm, ::attention, "
        "::attention_op, ::paged_attention, ::write_kv_cache with PyTorch failed");
  }
  library = made;
}

int set_thread_ops(int ops) {
  const int previous = t_ops;
  t_ops = ops;
  return previous;
}

bool set_thread_bypass(bool on) {
  const bool previous = t_bypass;
  t_bypass = on;
  return previous;
}

void set_thread_scope(int64_t scope) { t_scope = scope; }

bool set_thread_counting(bool on) {
  const bool previous = !t_uncounted;
  t_uncounted = !on;
  return previous;
}

void set_num_threads(int num_threads) { g_num_threads = num_threads; }
void set_error_reader(std::string (*reader)()) { g_error_reader = reader; }

void clear_decisions() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  g_cache.clear();
}

size_t decisions() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return g_cache.size();
}

std::vector<Count> counts(int slots) {
  std::vector<Count> result(static_cast<size_t>(slots < kMaxCounters ? slots : kMaxCounters));
  for (size_t i = 0; i < result.size(); ++i) {
    result[i] = {g_counters[i].calls.load(std::memory_order_relaxed),
                 g_counters[i].flops.load(std::memory_order_relaxed)};
  }
  return result;
}

void reset_counts() {
  for (auto& counter : g_counters) {
    counter.calls.store(0, std::memory_order_relaxed);
    counter.flops.store(0, std::memory_order_relaxed);
  }
}

}  // namespace hetero::route
