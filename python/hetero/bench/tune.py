"""``hetero tune``: from benchmark results, the fastest *correct* kernel per device, op,
dtype and shape bucket, as a :class:`hetero.tuned.Table` that dispatch then uses.

Within a bucket, a kernel wrong (or failing) on any of the bucket's cases is out. The
rest are compared on the cases all of them ran (their summed medians); when they share
no case, the kernel that ran the most cases wins. The PyTorch baseline stands for the
``torch`` backend's kernel of the op (``torch.matmul``, ``torch.sdpa``), which an entry
may name like any other.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .. import fingerprint
from ..backends.pytorch import NAME as TORCH_BACKEND
from ..ops import registry as op_registry
from ..tuned import Entry, Table
from .work import TORCH


def row_kernel(row: dict) -> str | None:
    """The kernel a result row measured: its own, or for the PyTorch baseline the
    ``torch`` backend's kernel of the op (``None`` where there is none)."""
    if row["backend"] != TORCH:
        return row["kernel"]
    spec = op_registry.get(row["op"])
    kernels = spec.torch_kernels if spec is not None else ()
    return f"{TORCH_BACKEND}.{kernels[0].name}" if kernels else None


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
        ranked = _rank(eligible)
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
