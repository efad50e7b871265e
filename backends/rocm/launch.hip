// hetero._C_rocm: the kernels of backends/cuda/, compiled by hipcc.
//
// Nothing differs in the source: backends/cuda/runtime.h maps the runtime
// names, the kernels use block barriers only (no warp-size assumption), and
// without rocWMMA the GEMM and attention run their SIMT path. What is AMD's
// own lives here when it comes (MFMA fragments, LDS-sized tiles).
#include "backends/cuda/launch.cu"
