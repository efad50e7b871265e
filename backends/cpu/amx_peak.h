// AMX where the CPU and the OS allow it (amx_peak.cpp): the availability
// check, the tile configuration hetero's AMX code uses, and the bf16 peak loop.
#pragma once

#include <cstdint>

namespace hetero {
namespace cpu {

// The 64-byte tile configuration (palette 1) with every one of the 8 tiles
// 16 rows x 64 bytes: the shape of every tile hetero's AMX code loads.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

using AmxLoop = int64_t (*)(int64_t iterations);

// Whether this CPU has AMX-BF16 and the kernel lets this process use tiles.
bool amx_bf16_available();
// The same with AMX-INT8 as well.
bool amx_int8_available();

// The loop (flops done for `iterations` rounds), or nullptr without AMX.
AmxLoop amx_bf16_loop();

}  // namespace cpu
}  // namespace hetero
