"""The dispatch key's layout, pinned: ``(op, *trait fields, backend, scope)``, built flat
by each op's hot path and taken apart by its traits' ``from_key``."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import dispatch
from hetero.kernel import dispatch_traits
from hetero.ops import spec
from hetero.testing import randn

GEMM_FIELDS = ("op", "device", "dtype", "out_dtype", "bias", "batch", "align", "bucket",
               "sizes")
ATTENTION_FIELDS = ("op", "device", "dtype", "head_dim", "head_dim_v", "causal", "gqa", "mask",
                    "align", "bucket", "sizes")


def test_trait_fields_are_pinned():
    assert spec("gemm").traits._fields == GEMM_FIELDS
    assert spec("attention").traits._fields == ATTENTION_FIELDS


@pytest.mark.parametrize("op, args, kwargs, expected", [
    ("gemm", (randn(2, 3, 4), randn(4, 5)), {"bias": randn(5)},
     ("gemm", torch.device("cpu"), torch.float32, None, True, True, None, None, None)),
    ("attention", (randn(1, 4, 3, 8), randn(1, 2, 5, 8), randn(1, 2, 5, 6)),
     {"causal": True, "attn_mask": torch.ones(3, 5, dtype=torch.bool)},
     ("attention", torch.device("cpu"), torch.float32, 8, 6, True, True, "bool", None, None, None)),
])
def test_key_round_trips_through_the_traits(op, args, kwargs, expected):
    with hetero.use("cpu", "*"):
        key, _ = spec(op).bind(*args, **kwargs, backend=["cpu", "reference"])
        scope = dispatch.current_scope.get()
    traits, backend, got_scope = dispatch.split_key(key)
    assert tuple(traits) == expected
    assert (backend, got_scope) == (("cpu", "reference"), scope)
    assert traits.key(backend, got_scope) == key
    assert type(traits).from_key(key) == (traits, backend, got_scope)


def test_traits_must_start_with_op_and_carry_the_common_fields():
    from typing import NamedTuple

    class NoOp(NamedTuple):
        device: torch.device
        dtype: torch.dtype
        align: int
        bucket: tuple

        @property
        def features(self):
            return frozenset()

    with pytest.raises(TypeError, match="first field is 'op'"):
        dispatch_traits(NoOp)
