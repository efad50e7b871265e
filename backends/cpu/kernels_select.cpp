// Run-time choice of GEMM kernels from the CPU's features.

#include <atomic>
#include <cstring>

#include "kernels.h"

namespace hetero {
namespace cpu {
namespace {

bool cpu_has_avx2_fma_f16c() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const KernelSet& best_kernels() {
  const KernelSet* avx2 = avx2_kernels();
  return avx2 != nullptr && cpu_has_avx2_fma_f16c() ? *avx2 : portable_kernels();
}

std::atomic<const KernelSet*> active{nullptr};

}  // namespace

const KernelSet& active_kernels() {
  const KernelSet* k = active.load(std::memory_order_acquire);
  if (k == nullptr) {
    k = &best_kernels();
    active.store(k, std::memory_order_release);
  }
  return *k;
}

bool select_kernels(const char* isa) {
  const KernelSet* chosen = nullptr;
  if (std::strcmp(isa, "auto") == 0) {
    chosen = &best_kernels();
  } else if (std::strcmp(isa, "portable") == 0) {
    chosen = &portable_kernels();
  } else if (std::strcmp(isa, "avx2") == 0 && avx2_kernels() != nullptr && cpu_has_avx2_fma_f16c()) {
    chosen = avx2_kernels();
  }
  if (chosen == nullptr) return false;
  active.store(chosen, std::memory_order_release);
  return true;
}

}  // namespace cpu
}  // namespace hetero
