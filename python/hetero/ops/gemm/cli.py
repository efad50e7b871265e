"""``hetero explain gemm``'s options: ``--shape M,N,K`` and the call's features."""

from __future__ import annotations

from ...cli import ExplainCli, dims


def _add_arguments(parser) -> None:
    parser.add_argument("--shape", required=True, help="M,N,K")
    parser.add_argument("--batch", type=int, help="leading batch size")
    parser.add_argument("--bias", action="store_true", help="add a bias of shape (N,)")


def _call(options, make):
    m, n, k = dims(options.shape, 3, "M,N,K")
    batch = [options.batch] if options.batch else []
    return [make(*batch, m, k), make(*batch, k, n)], {"bias": make(n) if options.bias else None}


SPEC = ExplainCli(_add_arguments, _call)
