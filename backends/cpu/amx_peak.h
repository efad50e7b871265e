// The AMX bf16 peak loop (amx_peak.cpp), where the CPU and the OS allow it.
#pragma once

#include <cstdint>

namespace hetero {
namespace cpu {

using AmxLoop = int64_t (*)(int64_t iterations);

// Whether this CPU has AMX-BF16 and the kernel lets this process use tiles.
bool amx_bf16_available();

// The loop (flops done for `iterations` rounds), or nullptr without AMX.
AmxLoop amx_bf16_loop();

}  // namespace cpu
}  // namespace hetero
