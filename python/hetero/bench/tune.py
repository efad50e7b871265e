"""``hetero tune``: from benchmark results, the fastest *correct* kernel per device, op,
dtype and shape bucket, as a :class:`hetero.tuned.Table` that dispatch then uses.

Within a bucket, a kernel wrong (or failing) on any of the bucket's cases is out. The
rest are compared on the cases all of them ran (their summed medians); when they share
no case, the kernel that ran the most cases wins. The PyTorch baseline stands for the
``torch`` backend's kernel of the op (``torch.matmul``, ``torch.sdpa``), which an entry
may name like any other; another kernel takes a bucket from it only by beating it by
more than :data:`TORCH_MARGIN`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import torch

from .. import fingerprint
from ..backends.pytorch import NAME as TORCH_BACKEND
from ..ops import registry as op_registry
from ..tuned import Entry, Table
from .work import TORCH


def row_kernel(row: dict) -> str | None:
    """The kernel a result row measured: its own, or for the PyTorch baseline the
    ``torch`` backend's first kernel of the op that takes the row's dtype (``None``
    where there is none)."""
    if row["backend"] != TORCH:
        return row["kernel"]
    spec = op_registry.get(row["op"])
    dtype = getattr(torch, row["dtype"], None)
    kernels = [k for k in (spec.torch_kernels if spec is not None else ())
               if dtype in k.support.dtypes]
    return f"{TORCH_BACKEND}.{kernels[0].name}" if kernels else None


#: How much faster than PyTorch's own kernel another kernel must be to take a bucket
#: from it: a smaller lead is within the noise of a short measurement, and serving a
#: call through hetero's operator (as autograd does) costs more per call than letting
#: PyTorch run it.
TORCH_MARGIN = 0.03


def torch_keeps(ranked: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """``ranked`` with PyTorch's kernel first where the winner's lead over it (on the
    same cases) is at most :data:`TORCH_MARGIN`."""
    for i, (kernel, seconds, cases) in enumerate(ranked[1:], 1):
        if kernel.startswith(TORCH_BACKEND + "."):
            winner = ranked[0]
            if cases == winner[2] and seconds <= winner[1] * (1 + TORCH_MARGIN):
                return [ranked[i]] + ranked[:i] + ranked[i + 1:]
            break
    return ranked


def _rank(per_kernel: dict[str, dict]) -> list[tuple[str, float, int]]:
    """``(kernel, summed median, cases compared)``, fastest first."""
    common = set.intersection(*(set(cases) for cases in per_kernel.values()))
    ranked = []
    for kernel, cases in per_kernel.items():
        keys = common or set(cases)
        ranked.append((kernel, sum(cases[k] for k in keys), len(keys)))
    return sorted(ranked, key=lambda t: (-t[2], t[1]) if not common else (t[1],))


def table_from_runs(docs: list[dict]) -> Table:
    """The tuned table of the result documents ``docs`` (many devices may mix)."""
    groups: dict[tuple, dict[str, dict]] = {}
    disqualified: set[tuple] = set()
    for i, doc in enumerate(docs):
        for r in doc["rows"]:
            kernel = row_kernel(r)
            if not kernel or r["status"] == "unsupported":
                continue
            group = (r["device_name"], r["op"], r["dtype"], tuple(r["bucket"]))
            if r["status"] != "ok":
                disqualified.add((group, kernel))
                continue
            groups.setdefault(group, {}).setdefault(kernel, {})[(i, r["case"])] = \
                r["median_s"]
    entries = []
    for group, per_kernel in groups.items():
        eligible = {k: v for k, v in per_kernel.items() if (group, k) not in disqualified}
        if not eligible:
            continue
        ranked = torch_keeps(_rank(eligible))
        (kernel, seconds, cases), second = ranked[0], ranked[1] if len(ranked) > 1 else None
        entries.append(Entry(*group, kernel=kernel, median_s=seconds,
                             runner_up=second[0] if second else None,
                             runner_up_s=second[1] if second else None, cases=cases))
    return Table(entries, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 fingerprint=fingerprint.current())


def merged(old: Table | None, new: Table) -> Table:
    """``old``'s entries, overwritten by ``new``'s where both have one."""
    entries = dict(old.entries) if old is not None else {}
    entries.update(new.entries)
    return Table(entries.values(), created=new.created, fingerprint=new.fingerprint)
