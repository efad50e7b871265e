// Adds hetero._C.route (see route.h) to the module.
#pragma once

#include <pybind11/pybind11.h>

namespace hetero::route {

void bind(pybind11::module_& parent);

}  // namespace hetero::route
