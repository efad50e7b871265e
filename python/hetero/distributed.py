"""hetero's torch operators under ``torch.distributed``: DTensor sharding rules, and the
operator names selective activation checkpointing lists need.

Each op declares how its torch operators shard (``OpSpec.sharding``, e.g.
:mod:`hetero.ops.gemm.sharding`); :func:`install` registers those rules with
``torch.distributed.tensor.experimental.register_sharding``, so a tensor-parallel or
FSDP2 model keeps running on hetero's kernels: DTensor redistributes the inputs to an
acceptable placement and calls the operator on each rank's local shards. It runs by
itself the first time :func:`hetero.enable` routes a DTensor call (and at import when
``torch.distributed.tensor`` is already loaded: :func:`install_if_loaded`); importing
hetero alone does not load ``torch.distributed``. DTensor calls of an op without rules stay with PyTorch, counted
with the reason.
"""

from __future__ import annotations

import sys

from .ops import registry as op_registry

_installed: set = set()  # operator overloads whose rules are registered


def install() -> list:
    """Register every op's sharding rules with DTensor (once per operator); returns the
    operators that have rules."""
    from torch.distributed.tensor.experimental import register_sharding

    for spec in op_registry.specs():
        for overload, strategies in (spec.sharding or {}).items():
            if overload not in _installed:
                register_sharding(overload)(strategies)
                _installed.add(overload)
    return sorted(_installed, key=str)


def has_rules(op: str) -> bool:
    """Whether op ``op``'s torch operators shard over DTensors."""
    spec = op_registry.get(op)
    return spec is not None and bool(spec.sharding)


def checkpoint_ops() -> list:
    """hetero's torch operators (``torch.ops.hetero.*`` overloads) for selective
    activation checkpointing policies, e.g. to save rather than recompute them::

        policy = lambda ctx, op, *a, **k: (CheckpointPolicy.MUST_SAVE
            if op in hetero.distributed.checkpoint_ops() else CheckpointPolicy.PREFER_RECOMPUTE)
    """
    import torch

    names = sorted(n.removeprefix("hetero::").partition(".")[0]
                   for n in torch._C._dispatch_get_all_op_names() if n.startswith("hetero::"))
    return [getattr(torch.ops.hetero, name).default for name in dict.fromkeys(names)]


def install_if_loaded() -> None:
    """:func:`install` now if DTensor is in use already (called once hetero's ops are
    registered, at import)."""
    if "torch.distributed.tensor" in sys.modules:
        install()
