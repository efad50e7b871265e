"""The backend protocol.

A backend is a small object that names itself, says which torch device type its kernels
take, says why it cannot run (``probe``), and lists its kernels with what they support.
Register one through the ``hetero.backends`` entry-point group::

    [project.entry-points."hetero.backends"]
    mychip = "mychip_hetero:backend"      # a Backend instance, or a class/factory
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..kernel import Kernel


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
    """

    name: str = ""
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

    def synchronize(self, device: torch.device | None = None) -> None:
        """Wait for the backend's queued work on ``device`` (no-op on the CPU)."""
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    def __repr__(self) -> str:
        return f"<hetero backend {self.name!r} ({self.device_type})>"
