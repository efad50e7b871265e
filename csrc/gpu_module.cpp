// hetero._C_cuda, hetero._C_rocm and hetero._C_gpu_host: one binding file,
// compiled once per GPU build of backends/cuda/launch.cu (HETERO_GPU_MODULE
// names the module). Bindings only, no logic, no CUDA/HIP/torch headers.

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "backends/cuda/launch.h"
#include "py_views.h"

#ifndef HETERO_GPU_MODULE
#error "HETERO_GPU_MODULE must name the module (_C_cuda, _C_rocm or _C_gpu_host)"
#endif

namespace py = pybind11;
using hetero::Status;
using hetero::TensorView;
using hetero::gpu::MathPath;
using namespace hetero::py_views;

namespace {

MathPath to_path(const std::string& path) {
  if (path == "tensor_cores") return MathPath::tensor_cores;
  if (path == "simt") return MathPath::simt;
  throw py::value_error("path: expected 'tensor_cores' or 'simt', got '" + path + "'");
}

void* to_stream(py::handle stream) { return stream.is_none() ? nullptr : to_pointer(stream, "stream"); }

void gemm(py::handle a, py::handle b, py::handle out, py::handle bias, double alpha, double beta,
          py::handle stream, const std::string& path) {
  const TensorView av = to_view(a, "a"), bv = to_view(b, "b"), ov = to_view(out, "out");
  TensorView bias_slot;
  const TensorView* cv = optional_view(bias, "bias", &bias_slot);
  void* s = to_stream(stream);
  const MathPath p = to_path(path);
  Status status;
  {
    py::gil_scoped_release release;
    status = hetero::gpu::gemm(av, bv, ov, cv, alpha, beta, s, p);
  }
  raise_if_error(status);
}

void attention_forward(py::handle q, py::handle k, py::handle v, py::handle mask, bool causal,
                       double scale, py::handle out, py::handle stream, const std::string& path) {
  const TensorView qv = to_view(q, "q"), kv = to_view(k, "k"), vv = to_view(v, "v");
  const TensorView ov = to_view(out, "out");
  TensorView mask_slot;
  const TensorView* mv = optional_view(mask, "mask", &mask_slot);
  void* s = to_stream(stream);
  const MathPath p = to_path(path);
  Status status;
  {
    py::gil_scoped_release release;
    status = hetero::gpu::attention_forward(qv, kv, vv, mv, causal, scale, ov, s, p);
  }
  raise_if_error(status);
}

py::dict runtime_report() {
  const hetero::gpu::RuntimeReport r = hetero::gpu::runtime_report();
  py::dict d;
  d["platform"] = hetero::gpu::platform();
  d["device_count"] = r.device_count;
  d["runtime_version"] = r.runtime_version;
  d["driver_version"] = r.driver_version;
  d["error"] = r.error;
  py::list paths;
  if (hetero::gpu::has_path(MathPath::tensor_cores)) paths.append("tensor_cores");
  if (hetero::gpu::has_path(MathPath::simt)) paths.append("simt");
  d["paths"] = paths;
#ifdef HETERO_GPU_ARCHS
  d["archs"] = HETERO_GPU_ARCHS;
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(HETERO_GPU_MODULE, m) {
  m.doc() = "hetero's GPU kernels (backends/cuda/), framework-free: tensors passed as raw views";

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("bias") = py::none(),
        py::arg("alpha") = 1.0, py::arg("beta") = 1.0, py::arg("stream") = py::none(),
        py::arg("path") = "tensor_cores",
        "out = alpha * (a @ b) + beta * bias, launched on `stream` (a cudaStream_t/hipStream_t\n"
        "as an int; None: the default stream) of the current device. Views as in hetero._C.gemm;\n"
        "a and b float16/bfloat16. path: 'tensor_cores' or 'simt' (what this build has:\n"
        "runtime_report()['paths']). Raises ValueError/TypeError for bad views,\n"
        "RuntimeError with the runtime's message when the launch fails.");
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("mask"), py::arg("causal"), py::arg("scale"), py::arg("out"),
        py::arg("stream") = py::none(), py::arg("path") = "tensor_cores",
        "Flash attention forward into out, launched like gemm. q (B, Hq, Sq, D),\n"
        "k (B, Hkv, Sk, D), v (B, Hkv, Sk, D), out (B, Hq, Sq, D): float16/bfloat16, D = 64\n"
        "or 128; mask None or (B, Hq, Sq, Sk) bool/additive; causal bottom-right aligned.");
  m.def("runtime_report", &runtime_report,
        "What the runtime reports: platform, device_count, runtime_version, driver_version,\n"
        "error (why no device could be counted), paths and, for CUDA/HIP builds, archs.");
}
