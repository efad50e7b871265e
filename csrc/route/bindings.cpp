// hetero._C.route: the Python face of the native route (route.h). Bindings only.
#include "route/bindings.h"

#include <string>

#include "route/route.h"

namespace py = pybind11;

namespace hetero::route {
namespace {

py::object* g_error_reader = nullptr;  // leaked on purpose: alive until the process ends

std::string read_python_error() {
  py::gil_scoped_acquire gil;
  if (g_error_reader == nullptr) return "";
  return py::cast<std::string>((*g_error_reader)());
}

}  // namespace

void bind(py::module_& parent) {
  py::module_ m = parent.def_submodule(
      "route", "hetero's kernels behind PyTorch's CPU aten::mm / aten::bmm (csrc/route/route.h)");
  m.attr("MAX_COUNTERS") = kMaxCounters;
  m.attr("BUCKET_WIDE") = kBucketWide;
  m.def("load", &load, py::arg("libtorch_path"),
        "Find PyTorch's C shim in the loaded libtorch at libtorch_path; '' or why not.");
  m.def("loaded", &loaded);
  m.def("install", &install, py::call_guard<py::gil_scoped_release>(),
        "Register the kernels (the first of nested installs); RuntimeError on failure.");
  m.def("uninstall", &uninstall, py::call_guard<py::gil_scoped_release>(),
        "Undo one install; the last restores PyTorch's kernels.");
  m.def("installs", &installs);
  m.def("register_entry_calls", &register_entry_calls,
        "Register hetero_route::gemm's and ::scaled_gemm's native kernels (once; their\n"
        "schemas defined first).");
  m.attr("GEMM") = static_cast<int>(kRouteGemm);
  m.attr("ATTENTION") = static_cast<int>(kRouteAttention);
  m.attr("SCALED_GEMM") = static_cast<int>(kRouteScaled);
  m.def("set_thread_ops", &set_thread_ops, py::arg("ops"),
        "What this thread routes (GEMM | ATTENTION | SCALED_GEMM bits, 0: nothing); returns\n"
        "the previous.");
  m.def("set_thread_bypass", &set_thread_bypass, py::arg("on"),
        "Send this thread's calls to PyTorch regardless (True); returns the previous setting.");
  m.def("set_thread_scope", &set_thread_scope, py::arg("scope"),
        "The id of this thread's hetero.use() scope, part of every cached decision's key.");
  m.def("set_thread_counting", &set_thread_counting, py::arg("on"),
        "Count this thread's routed calls (True, the default) or not; returns the previous.");
  m.def("set_num_threads", &set_num_threads, py::arg("num_threads"),
        "Threads of the native kernels; 0 follows torch.get_num_threads().");
  m.def("set_error_reader", [](py::object reader) {
        if (g_error_reader == nullptr) g_error_reader = new py::object();
        *g_error_reader = std::move(reader);
        set_error_reader(&read_python_error);
      }, py::arg("reader"),
      "reader() -> str: the message of the exception Python's decide/run op stashed.");
  m.def("clear_decisions", &clear_decisions);
  m.def("decisions", &decisions, "How many decisions the native cache holds.");
  m.def("counts", [](int slots) {
        py::list result;
        for (const Count& c : counts(slots)) result.append(py::make_tuple(c.calls, c.flops));
        return result;
      }, py::arg("slots"), "(calls, flops) of counting slots 0..slots-1.");
  m.def("reset_counts", &reset_counts);
}

}  // namespace hetero::route
