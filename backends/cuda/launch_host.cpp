// backends/cuda/launch.cu compiled by a plain C++ compiler: the same kernels
// run by the execution model of host_emulation.h (hetero._C_gpu_host).
#define HETERO_GPU_HOST 1
#include "backends/cuda/launch.cu"
