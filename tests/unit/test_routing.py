"""hetero.routing: how enable() turns a PyTorch call into a decision and a kernel call."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import torch_ops
from hetero.testing import randn

enable_module = importlib.import_module("hetero.enable")

CALLS = {
    "F.linear": (F.linear, (randn(2, 5, 7, seed=1), randn(3, 7, seed=2))),
    "sdpa": (F.scaled_dot_product_attention,
             (randn(1, 2, 5, 8, seed=3), randn(1, 2, 6, 8, seed=4), randn(1, 2, 6, 8, seed=5))),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_deciding_a_call_allocates_no_output_and_serving_it_does(name):
    # PyTorch may serve the call, so the record the routing mode decides on holds a
    # one-element stand-in; a kernel that serves it writes a fresh output.
    func, args = CALLS[name]
    with hetero.enabled(native=False):
        mode = enable_module._active()
        route = mode.routes[func]
        call = route.route(mode, *enable_module.bind(args, {}, route.names, route.defaults))
        key, record = call.prepare()
        kernel, _ = torch_ops.decide(key, record)
        got = call.serve(kernel, record)
    assert record.out.untyped_storage().nbytes() == record.out.element_size()
    assert got.untyped_storage().nbytes() == got.numel() * got.element_size()
    torch.testing.assert_close(got, func(*args), atol=1e-5, rtol=1e-5)
