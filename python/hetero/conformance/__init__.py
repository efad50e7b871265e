"""The conformance suite: what a backend must do to be trusted (``hetero conformance``).

>>> report = hetero.conformance.run("cpu", quick=True)
>>> report.conformant, report.counts
>>> open("cpu.md", "w").write(report.markdown())

Also ``hetero conformance --backend NAME [--quick]`` and
``pytest --pyargs hetero.conformance --hetero-backend NAME [--hetero-quick]``.
Cases are data (:mod:`.cases`; each op brings its own through a
:class:`ConformanceSpec`), more are derived from the backend's declared support
(:mod:`.declared`), checks are in :mod:`.checks`, isolation, verdicts and reports in
:mod:`.runner`.
"""

from .cases import VERSION, Case, ConformanceSpec, all_cases, case_hash, case_seed
from .checks import CRASH, FAIL, NOT_SUPPORTED, PASS, judge
from .runner import (CONFORMANT, EXIT_STATUS, INCOMPLETE, NOT_CONFORMANT, NOT_RUN, Report,
                     Result, Session, run)

__all__ = ["CONFORMANT", "CRASH", "EXIT_STATUS", "FAIL", "INCOMPLETE", "NOT_CONFORMANT",
           "NOT_RUN", "NOT_SUPPORTED", "PASS", "VERSION", "Case", "ConformanceSpec", "Report",
           "Result", "Session", "all_cases", "case_hash", "case_seed", "judge", "run"]
