// Result of every launcher. Kernels report errors by value: nothing throws
// across the backend boundary, so a bad view can never take the process down.
#pragma once

#include <string>
#include <utility>

namespace hetero {

struct Status {
  // Scoped so that the enumerator `ok` does not clash with the method ok().
  enum class Code { ok, invalid_argument, unsupported, internal };

  Code code = Code::ok;
  std::string message;

  static Status Ok() { return Status{}; }
  static Status InvalidArgument(std::string msg) {
    return Status{Code::invalid_argument, std::move(msg)};
  }
  static Status Unsupported(std::string msg) { return Status{Code::unsupported, std::move(msg)}; }
  static Status Internal(std::string msg) { return Status{Code::internal, std::move(msg)}; }

  bool ok() const { return code == Code::ok; }
};

}  // namespace hetero
