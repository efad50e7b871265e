// The native route: hetero's kernels behind PyTorch's own CPU matmul operators.
//
// While installed, the CPU kernels of aten::mm, aten::bmm and their .out forms are
// hetero's. A call on a thread where routing is on looks its decision up in a native
// cache keyed by (operator, dtype, sizes, layout class, alignment, scope); a miss asks
// Python (the op hetero_route::decide, through the dispatcher, so it sees the real
// tensors) which hetero's dispatcher answers. A decision runs hetero's native GEMM,
// hands the call to PyTorch's own CPU kernel (called directly, so nothing recurses), or
// calls the Python op hetero_route::run (kernels written in Python). Every call routed
// on is counted natively; hetero.stats() reads the counts.
//
// Threads where routing is off, and calls made while Python decides (the bypass), go
// straight to PyTorch's kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hetero::route {

constexpr int kMaxCounters = 4096;  // counting slots Python hands out (op, kernel or reason)

// What a decision does; Python's decide op returns counter * 4 + action (or -1: an error,
// whose message the error reader gives), plus kBucketWide where the decision holds for
// every call whose sizes round up to the same powers of two (the tuned table's bucket).
enum Action : int64_t { kTorch = 0, kNative = 1, kPython = 2 };
constexpr int64_t kBucketWide = int64_t{1} << 40;

// Loads PyTorch's C shim from `libtorch_path`; "" or why the route cannot run here.
std::string load(const std::string& libtorch_path);
bool loaded();

// install() registers the kernels on the first call; uninstall() restores PyTorch's
// kernels when the last install is undone. Both throw std::runtime_error on failure.
void install();
void uninstall();
int installs();

// Registers the kernels of hetero_route::gemm and ::gemm_op (gemm_route.cpp), ::scaled_gemm
// (scaled_route.cpp), ::paged_attention and ::write_kv_cache (paged_route.cpp) and
// ::attention and ::attention_op (attention_route.cpp) on every device, for the rest of the process; the ops'
// schemas must be defined (Python defines them). Throws on failure.
void register_entry_calls();

// What a thread routes: RoutedOp bits (0: nothing).
enum RoutedOp : int { kRouteGemm = 1, kRouteAttention = 2, kRouteScaled = 4 };
int set_thread_ops(int ops);  // these return the previous value
bool set_thread_bypass(bool on);
void set_thread_scope(int64_t scope);
bool set_thread_counting(bool on);  // false: this thread's calls are not counted
void set_num_threads(int num_threads);  // 0: torch.get_num_threads()
void set_error_reader(std::string (*reader)());

void clear_decisions();
size_t decisions();

struct Count {
  uint64_t calls = 0;
  uint64_t flops = 0;
};
std::vector<Count> counts(int slots);
void reset_counts();

}  // namespace hetero::route
