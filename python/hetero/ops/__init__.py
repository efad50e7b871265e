"""The ops: one folder each (``gemm/``, ``attention/``), registered in :mod:`.registry`.

An op's folder holds its argument record and dispatch traits, input checks, the public
function, the float64 reference, FLOP and byte counts, the error bound, and what each
consumer needs of it (conformance cases, benchmark cases, ``enable()`` routes, the torch
op, the CLI's options); its ``__init__`` assembles them into one :class:`OpSpec` and
registers it. ``_checks`` holds the input checks the ops share.
"""

from .registry import OpSpec, get, list_ops, register_op, spec, specs, unregister_op

__all__ = ["OpSpec", "get", "list_ops", "register_op", "spec", "specs", "unregister_op"]
