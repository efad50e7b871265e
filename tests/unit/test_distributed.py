"""hetero.distributed without processes: the operators for checkpointing lists, and when
the sharding rules are registered (two-rank tests are in tests/distributed/)."""

from __future__ import annotations

import subprocess
import sys

import torch

import hetero


def test_checkpoint_ops_lists_hetero_operators():
    names = {op.name() for op in hetero.distributed.checkpoint_ops()}
    assert {"hetero::gemm", "hetero::attention_forward", "hetero::attention_backward"} <= names
    assert all(isinstance(op, torch._ops.OpOverload) for op in hetero.distributed.checkpoint_ops())
    assert hetero.distributed.has_rules("gemm") and hetero.distributed.has_rules("attention")
    assert not hetero.distributed.has_rules("nonesuch")


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_rules_register_at_import_only_when_dtensor_is_loaded():
    assert _python("import sys, hetero; print('torch.distributed.tensor' in sys.modules, "
                   "len(hetero.distributed._installed))") in ("False 0",)
    assert _python("import torch.distributed.tensor, hetero; "
                   "print(len(hetero.distributed._installed))") == "3"
