"""The backend protocol.

A backend is a small object that names itself, says which torch device type its kernels
take, says why it cannot run (``probe``), and lists its kernels with what they support.
Register one through the ``hetero.backends`` entry-point group::

    [project.entry-points."hetero.backends"]
    mychip = "mychip_hetero:backend"      # a Backend instance, or a class/factory

The protocol is versioned (:data:`PLUGIN_API`, ``"major.minor"``). A backend states the
version it was written for in ``api_version``; hetero loads it when the majors match and
the backend's minor is not newer than hetero's. Anything else — including no
``api_version`` at all — is refused whole, with the reason, before any of its kernels
is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..kernel import Kernel

#: The backend protocol's version: ``major`` changes break backends, ``minor`` adds
#: optional things a backend may use.
PLUGIN_API = "2.1"

#: Minor versions: 2.1 added the optional :meth:`Backend.peaks`.
#: What changed for backends at each major version (said when an older one is refused).
CHANGES = {
    2: "kernels take the op's argument record (fn(args), args.a, args.out, ...) instead "
       "of positional arguments; Support.head_dims/head_dim_multiple became "
       "Support.limits; Kernel.training became Kernel.backward "
       "(docs/new_backend.md has the migration)",
}


@dataclass(frozen=True)
class DevicePeaks:
    """A device's peaks, as a backend declares them (:meth:`Backend.peaks`).

    tflops: dense matrix throughput per dtype name (``"bfloat16"``, ``"float16"``,
        ``"float32"``), TFLOP/s; a dtype left out has no "% of peak".
    tbytes_per_s: memory bandwidth, TB/s (``None``: unknown).
    source: where the figures come from (a datasheet, a measurement), for the report.
    """

    tflops: dict[str, float] = field(default_factory=dict)
    tbytes_per_s: float | None = None
    source: str = ""


def _parse(version: str) -> tuple[int, int]:
    major, minor = str(version).split(".")
    return int(major), int(minor)


def api_incompatibility(backend) -> str | None:
    """Why hetero cannot load ``backend`` under its plugin API, or ``None``."""
    declared = getattr(backend, "api_version", None)
    name = getattr(backend, "name", repr(backend))
    if declared is None:
        return (f"backend {name!r} declares no api_version; set api_version = "
                f"\"{PLUGIN_API}\" on it once it follows hetero's plugin API {PLUGIN_API}")
    try:
        major, minor = _parse(declared)
    except ValueError:
        return f"backend {name!r} has api_version {declared!r}; expected \"major.minor\""
    ours = _parse(PLUGIN_API)
    if major != ours[0] or minor > ours[1]:
        hint = ("install a hetero that speaks it, or a build of the backend for "
                f"{ours[0]}.x" if (major, minor) > ours else
                f"install a build of the backend for plugin API {ours[0]}.x")
        changed = "".join(f"; in {v}.0 {CHANGES[v]}" for v in range(major + 1, ours[0] + 1)
                          if v in CHANGES)
        return (f"backend {name!r} was built for hetero plugin API {declared}; this hetero "
                f"speaks {PLUGIN_API} ({hint}){changed}; it is not loaded")
    return None


class Backend:
    """Base class for backends; subclass it and override what differs.

    Attributes:
        name: unique name, as used in ``backend=``, ``hetero.use()`` and
            ``HETERO_BACKENDS``.
        device_type: the torch device type its kernels take (``"cpu"``, ``"cuda"``...),
            or ``"any"``.
        priority: rank in the default order of its device type (higher first).
        default: whether it joins the default order at all; opt-in backends (test
            doubles, simulators) run only when asked for by name.
        description: one line for ``hetero info``.
        api_version: the plugin API this backend follows (see :data:`PLUGIN_API`).
        details: facts for ``hetero info`` beyond the kernels' declared support
            (e.g. a simulated device's model), as ``{name: value}``.
    """

    name: str = ""
    api_version: str | None = None
    details: dict = {}
    device_type: str = "any"
    priority: int = 0
    default: bool = True
    description: str = ""

    def probe(self) -> list[str]:
        """Why this backend cannot run here; an empty list means it can.

        Keep "not installed/built" and "no device present" as separate reasons.
        Called once per process (and again after :func:`hetero.reload`).
        """
        return []

    def kernels(self) -> Sequence[Kernel]:
        """The kernels this backend provides, with their declared support."""
        return ()

    def peaks(self, device: torch.device) -> DevicePeaks | None:
        """The device's peak dense throughput and memory bandwidth, for the "% of peak"
        and roofline columns of ``hetero bench`` (``None``: not declared; hetero then
        measures a CPU or looks a GPU up in :mod:`hetero.devices`). Optional (plugin
        API 2.1)."""
        return None

    def synchronize(self, device: torch.device | None = None) -> None:
        """Wait for the backend's queued work on ``device`` (no-op on the CPU)."""
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    def __repr__(self) -> str:
        return f"<hetero backend {self.name!r} ({self.device_type})>"
