// Run-time choice of the CPU kernel set from the CPU's features.

#include <atomic>
#include <cstring>
#include <string>

#include "kernels.h"

namespace hetero {
namespace cpu {
namespace {

bool cpu_supports(std::initializer_list<const char*> features) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  for (const char* f : features) {
    // __builtin_cpu_supports takes a string literal only; map the names used here.
    const bool has = std::strcmp(f, "avx2") == 0 ? __builtin_cpu_supports("avx2")
                     : std::strcmp(f, "fma") == 0 ? __builtin_cpu_supports("fma")
                     : std::strcmp(f, "f16c") == 0 ? __builtin_cpu_supports("f16c")
                     : std::strcmp(f, "avx512f") == 0 ? __builtin_cpu_supports("avx512f")
                     : std::strcmp(f, "avx512bw") == 0 ? __builtin_cpu_supports("avx512bw")
                     : std::strcmp(f, "avx512vl") == 0 ? __builtin_cpu_supports("avx512vl")
                     : std::strcmp(f, "avx512dq") == 0 ? __builtin_cpu_supports("avx512dq")
                     : false;
    if (!has) return false;
  }
  return true;
#else
  (void)features;
  return false;
#endif
}

// The sets this build and CPU run, worst first.
struct Candidate {
  const char* name;
  const KernelSet* kernels;
};

Candidate runnable(const char* name) {
  if (std::strcmp(name, "portable") == 0) return {name, &portable_kernels()};
  // The CPU is asked first: a set's getter may run its own ISA (kernels.h).
  const bool avx2 = cpu_supports({"avx2", "fma", "f16c"}) && avx2_kernels() != nullptr;
  if (std::strcmp(name, "avx2") == 0) return {name, avx2 ? avx2_kernels() : nullptr};
  if (std::strcmp(name, "avx512") == 0) {
    const bool ok = avx2 && cpu_supports({"avx512f", "avx512bw", "avx512vl", "avx512dq"}) &&
                    avx512_kernels() != nullptr;
    return {name, ok ? avx512_kernels() : nullptr};
  }
  if (std::strcmp(name, "amx") == 0) {
    return {name, runnable("avx512").kernels != nullptr ? amx_kernels() : nullptr};
  }
  return {name, nullptr};
}

constexpr const char* kAllSets[] = {"portable", "avx2", "avx512", "amx"};

const KernelSet& best_kernels() {
  const KernelSet* best = &portable_kernels();
  for (const char* name : kAllSets) {
    const Candidate c = runnable(name);
    if (c.kernels != nullptr) best = c.kernels;
  }
  return *best;
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
  const KernelSet* chosen =
      std::strcmp(isa, "auto") == 0 ? &best_kernels() : runnable(isa).kernels;
  if (chosen == nullptr) return false;
  active.store(chosen, std::memory_order_release);
  return true;
}

const char* available_kernels() {
  static const std::string names = [] {
    std::string out;
    for (const char* name : kAllSets) {
      if (runnable(name).kernels == nullptr) continue;
      out += (out.empty() ? "" : ",");
      out += name;
    }
    return out;
  }();
  return names.c_str();
}

}  // namespace cpu
}  // namespace hetero
