// Turning Python arguments into TensorViews, and Status into Python
// exceptions: shared by every native module (hetero._C, _C_cuda, _C_rocm,
// _C_gpu_host).
//
// A tensor crosses as a plain tuple (data_ptr, dtype, sizes, strides),
// strides in elements, so no module includes a torch header.
#pragma once

#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "hetero/dtype.h"
#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace py_views {

namespace py = pybind11;

[[noreturn]] inline void reject(const char* name, const std::string& expected, py::handle got) {
  throw py::value_error(std::string(name) + ": expected " + expected + ", got " +
                        py::repr(got).cast<std::string>());
}

// Accepts anything with __index__ (int, DType, numpy integers), not floats.
inline int64_t to_int64(py::handle h, const char* name, const char* what) {
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

inline void* to_pointer(py::handle h, const char* name) {
  const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  const unsigned long long p = index ? PyLong_AsUnsignedLongLong(index.ptr()) : 0;
  if (!index || (p == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
    PyErr_Clear();
    reject(name, "data_ptr as a non-negative int", h);
  }
  return reinterpret_cast<void*>(static_cast<uintptr_t>(p));
}

inline py::sequence to_tuple(py::handle h, const char* name, const char* what) {
  if (!py::isinstance<py::tuple>(h) && !py::isinstance<py::list>(h)) reject(name, what, h);
  return py::reinterpret_borrow<py::sequence>(h);
}

// (data_ptr: int, dtype: int, sizes: tuple[int, ...], strides: tuple[int, ...])
inline TensorView to_view(py::handle obj, const char* name) {
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

inline void raise_if_error(const Status& s) {
  switch (s.code) {
    case Status::Code::ok: return;
    case Status::Code::invalid_argument: throw py::value_error(s.message);
    case Status::Code::unsupported: throw py::type_error(s.message);
    case Status::Code::internal: break;
  }
  throw std::runtime_error(s.message);
}

// None -> no view; otherwise the view, stored in `slot`.
inline const TensorView* optional_view(py::handle h, const char* name, TensorView* slot) {
  if (h.is_none()) return nullptr;
  *slot = to_view(h, name);
  return slot;
}

}  // namespace py_views
}  // namespace hetero
