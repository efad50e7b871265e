"""``hetero.audit`` (this package is ``hetero.auditing``): run a real model on a backend, and find the op that costs accuracy.

>>> report = hetero.audit(model, {"input_ids": ids}, backend="ascend_sim")
>>> print(report.verdict)
>>> open("audit.md", "w").write(report.markdown())

Also ``hetero audit MODEL_SPEC --backend NAME`` (:mod:`.presets` for the specs). The run
is in :mod:`.run`, the per-call shadow checks in :mod:`.recorder`, the report in
:mod:`.report`.
"""

from .recorder import CallRecord
from .report import AuditReport
from .run import audit

__all__ = ["AuditReport", "CallRecord", "audit"]
