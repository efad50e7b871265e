// hetero._C: the framework-free native module. Bindings only, no logic.
//
// Tensors cross as plain tuples (data_ptr, dtype, sizes, strides), strides in
// elements, so this module never includes a torch header and does not depend
// on libtorch's C++ ABI: one wheel works with any torch build.

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "backends/cpu/gemm.h"
#include "backends/cpu/gemm_kernels.h"
#include "hetero/dtype.h"
#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace py = pybind11;
using hetero::DType;
using hetero::Status;
using hetero::TensorView;

namespace {

[[noreturn]] void reject(const char* name, const std::string& expected, py::handle got) {
  throw py::value_error(std::string(name) + ": expected " + expected + ", got " +
                        py::repr(got).cast<std::string>());
}

// Accepts anything with __index__ (int, DType, numpy integers), not floats.
int64_t to_int64(py::handle h, const char* name, const char* what) {
  const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!index) {
    PyErr_Clear();
    reject(name, std::string(what) + " as an int", h);
  }
  const long long v = PyLong_AsLongLong(index.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    reject(name, std::string(what) + " within int64", h);
  }
  return static_cast<int64_t>(v);
}

void* to_pointer(py::handle h, const char* name) {
  const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  const unsigned long long p = index ? PyLong_AsUnsignedLongLong(index.ptr()) : 0;
  if (!index || (p == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
    PyErr_Clear();
    reject(name, "data_ptr as a non-negative int", h);
  }
  return reinterpret_cast<void*>(static_cast<uintptr_t>(p));
}

py::sequence to_tuple(py::handle h, const char* name, const char* what) {
  if (!py::isinstance<py::tuple>(h) && !py::isinstance<py::list>(h)) reject(name, what, h);
  return py::reinterpret_borrow<py::sequence>(h);
}

// (data_ptr: int, dtype: int, sizes: tuple[int, ...], strides: tuple[int, ...])
TensorView to_view(py::handle obj, const char* name) {
  const py::sequence t = to_tuple(obj, name, "a (data_ptr, dtype, sizes, strides) tuple");
  if (py::len(t) != 4) reject(name, "a (data_ptr, dtype, sizes, strides) tuple", obj);

  TensorView v;
  v.data = to_pointer(t[0], name);
  const int64_t code = to_int64(t[1], name, "dtype");
  if (code < INT32_MIN || code > INT32_MAX || !hetero::is_known(static_cast<DType>(code))) {
    reject(name, "a DType code", t[1]);
  }
  v.dtype = static_cast<DType>(code);

  const py::sequence sizes = to_tuple(t[2], name, "sizes as a tuple of ints");
  const py::sequence strides = to_tuple(t[3], name, "strides as a tuple of ints");
  const size_t ndim = py::len(sizes);
  if (ndim > static_cast<size_t>(hetero::kMaxDims)) {
    reject(name, "at most " + std::to_string(hetero::kMaxDims) + " dims", sizes);
  }
  if (py::len(strides) != ndim) reject(name, "as many strides as sizes", obj);
  v.ndim = static_cast<int32_t>(ndim);
  for (size_t d = 0; d < ndim; ++d) {
    v.sizes[d] = to_int64(sizes[d], name, "sizes");
    v.strides[d] = to_int64(strides[d], name, "strides");
  }
  return v;
}

void raise_if_error(const Status& s) {
  switch (s.code) {
    case Status::Code::ok: return;
    case Status::Code::invalid_argument: throw py::value_error(s.message);
    case Status::Code::unsupported: throw py::type_error(s.message);
    case Status::Code::internal: break;
  }
  throw std::runtime_error(s.message);
}

void gemm(py::handle a, py::handle b, py::handle out, py::handle bias, double alpha, double beta,
          int num_threads) {
  const TensorView av = to_view(a, "a");
  const TensorView bv = to_view(b, "b");
  const TensorView ov = to_view(out, "out");
  TensorView cv;
  if (!bias.is_none()) cv = to_view(bias, "bias");

  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::gemm(av, bv, ov, bias.is_none() ? nullptr : &cv, alpha, beta, num_threads);
  }
  raise_if_error(s);
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_FULL_VER);
#else
  return "unknown";
#endif
}

py::dict build_info() {
  py::dict info;
  info["compiler"] = compiler();
  info["cxx_standard"] = static_cast<long>(__cplusplus);
#ifdef HETERO_BUILD_TYPE
  info["build_type"] = HETERO_BUILD_TYPE;
#endif
#ifdef NDEBUG
  info["assertions"] = false;
#else
  info["assertions"] = true;
#endif
  info["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                     std::to_string(PYBIND11_VERSION_MINOR) + "." +
                     std::to_string(PYBIND11_VERSION_PATCH);
  info["max_dims"] = hetero::kMaxDims;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hetero native kernels (framework-free; tensors passed as raw views)";

  py::enum_<DType>(m, "DType", py::arithmetic())
      .value("float32", DType::float32)
      .value("float16", DType::float16)
      .value("bfloat16", DType::bfloat16)
      .value("float64", DType::float64);

  m.attr("MAX_DIMS") = hetero::kMaxDims;

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("bias") = py::none(),
        py::arg("alpha") = 1.0, py::arg("beta") = 1.0, py::arg("num_threads") = 1,
        "out = alpha * (a @ b) + beta * bias, in place into out.\n\n"
        "Each tensor is (data_ptr, dtype_code, sizes, strides), strides in elements.\n"
        "bias may be None; it is ignored when float32(beta) == 0. All four share one ndim\n"
        "(2..MAX_DIMS) and identical batch sizes (broadcast first; batch strides may be 0).\n"
        "Raises ValueError for malformed or inconsistent views, TypeError for\n"
        "unsupported dtypes. Runs on up to num_threads threads with the GIL released.");

  m.def("cpu_isa", [] { return std::string(hetero::cpu::active_kernels().isa); },
        "Name of the CPU kernel set in use: 'avx2' or 'portable'.");
  m.def("set_cpu_isa", [](const std::string& isa) {
        const std::string previous = hetero::cpu::active_kernels().isa;
        if (!hetero::cpu::select_kernels(isa.c_str())) {
          throw py::value_error("isa: expected 'auto', 'portable' or a kernel set this CPU "
                                "and build support ('avx2' on x86-64 with AVX2+FMA+F16C), got '" +
                                isa + "'");
        }
        return previous;
      }, py::arg("isa"),
      "Select the CPU kernel set ('auto', 'avx2', 'portable'); returns the previous name.\n"
      "For tests and benchmarks: 'auto' picks the best this CPU runs.");

  m.def("build_info", &build_info, "Compiler and build settings of this extension, as a dict.");
}
