"""How ``torch.ops.hetero.gemm`` shards over a DTensor mesh dimension: the placements of
``out`` each placement of ``a``, ``b`` and ``bias`` gives (``torch.distributed.tensor``'s
``register_sharding`` form: ``[([out], [a, b, bias, alpha, beta])]``, ``None`` for
arguments that are not tensors). Registered by :mod:`hetero.distributed`.

With ``a (..., M, K)``, ``b (..., K, N)`` and ``out (..., M, N)``:

- everything replicated;
- rows: ``a`` sharded on M, ``b`` replicated -> ``out`` sharded on M;
- columns: ``b`` sharded on N (``nn.Linear``'s column-wise plan) -> ``out`` on N;
- the contraction: ``a`` on K and ``b`` on K (the row-wise plan) -> ``out`` a partial
  sum, only without a bias (each shard would add it once);
- batch: ``a`` (and ``b``, where it has that batch dim) sharded on dim 0 -> ``out``
  on dim 0.

A bias follows ``out`` where it spans the sharded dim, and is replicated where it is
broadcast along it.
"""

from __future__ import annotations


def _bias(bias, out_ndim: int, dim: int, size: int):
    """The bias's placement when ``out`` is sharded on ``dim`` (of ``out_ndim``)."""
    from torch.distributed.tensor import Replicate, Shard

    if bias is None:
        return None
    offset = dim - (out_ndim - len(bias.shape))  # bias dims align with out's last ones
    if offset < 0 or bias.shape[offset] == 1 or size == 1:
        return Replicate()
    return Shard(offset)


def strategies(a, b, bias=None, alpha=1.0, beta=1.0) -> list:
    """The acceptable ``(out placements, input placements)`` for one call."""
    from torch.distributed.tensor import Partial, Replicate, Shard

    na, nb = len(a.shape), len(b.shape)
    n = max(na, nb)
    R = Replicate()
    found = [([R], [R, R, None if bias is None else R, None, None]),
             ([Shard(n - 2)], [Shard(na - 2), R, _bias(bias, n, n - 2, a.shape[-2]), None,
                               None]),
             ([Shard(n - 1)], [R, Shard(nb - 1), _bias(bias, n, n - 1, b.shape[-1]), None,
                               None])]
    if bias is None or beta == 0:
        found.append(([Partial()], [Shard(na - 1), Shard(nb - 2), None, None, None]))
    if n > 2 and na == n and a.shape[0] > 1:
        on_b = Shard(0) if nb == n and b.shape[0] > 1 else R
        found.append(([Shard(0)], [Shard(0), on_b, _bias(bias, n, 0, a.shape[0]), None,
                                   None]))
    return found
