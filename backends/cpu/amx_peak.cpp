// The bf16 multiply-add peak of AMX (Intel Sapphire Rapids and later): a loop
// of tile dot products (tdpbf16ps), for "% of peak" where PyTorch's own bf16
// GEMMs run on AMX. Built with -mamx-tile -mamx-bf16 and run only where CPUID
// reports AMX-BF16 and the kernel grants this process the tile state.
//
// Tiles: C0..C3 (16 rows x 16 fp32) accumulate A (16 x 32 bf16) . B (32 x 16,
// stored as 16 rows of 16 bf16 pairs); four independent accumulators hide the
// instruction's latency. Each tdpbf16ps is 16 * 16 * 32 * 2 = 16384 flops.

#include "amx_peak.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__linux__) && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HETERO_AMX 1
#endif

namespace hetero {
namespace cpu {

#if defined(HETERO_AMX)
namespace {

constexpr int kArchReqXcompPerm = 0x1023;  // arch_prctl: ask for an extended state
constexpr int kXfeatureXtiledata = 18;     // the AMX tile data state

bool cpu_has_amx_bf16() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (edx & (1u << 22)) != 0 && (edx & (1u << 24)) != 0;  // AMX-BF16, AMX-TILE
}

bool tile_state_granted() {
  static const bool granted = cpu_has_amx_bf16() &&
                              syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
}

int64_t amx_loop(int64_t iterations) {
  const TileConfig config;
  alignas(64) static const uint16_t zeros[16 * 32] = {};  // bf16 zeros: no special values
  _tile_loadconfig(&config);
  _tile_zero(0);  // tile numbers are immediates
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, zeros, 64);
  _tile_loadd(5, zeros, 64);
  _tile_loadd(6, zeros, 64);
  _tile_loadd(7, zeros, 64);
  for (int64_t i = 0; i < iterations; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float sink[16 * 16];
  _tile_stored(0, sink, 64);  // keep the chain observable
  _tile_release();
  volatile float keep = sink[0];
  (void)keep;
  return iterations * 4 * 16384;
}

}  // namespace

bool amx_bf16_available() { return tile_state_granted(); }

bool amx_int8_available() {
  unsigned eax, ebx, ecx, edx;
  return tile_state_granted() && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) &&
         (edx & (1u << 25)) != 0;  // AMX-INT8
}

AmxLoop amx_bf16_loop() { return tile_state_granted() ? amx_loop : nullptr; }

#else

bool amx_bf16_available() { return false; }

bool amx_int8_available() { return false; }

AmxLoop amx_bf16_loop() { return nullptr; }

#endif

}  // namespace cpu
}  // namespace hetero
