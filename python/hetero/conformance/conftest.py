"""``pytest --pyargs hetero.conformance --hetero-backend NAME``: one test per case.

Options (added by the ``hetero_pytest`` plugin): ``--hetero-backend NAME`` (required),
``--hetero-quick``, ``--hetero-plugin MODULE:ATTR`` (repeatable) and
``--hetero-no-isolate``. Cases (the core and those derived from the backend's
declared support) run in a worker process, so a crash fails its test instead of ending
the session. NotSupported cases are skipped with the backend's reason.
"""

from __future__ import annotations

import pytest

from .. import registry
from . import declared
from .cases import all_cases
from .runner import Session, load_plugins


def pytest_generate_tests(metafunc):
    if "conformance_case" in metafunc.fixturenames:
        quick = metafunc.config.getoption("--hetero-quick")
        cases = all_cases(quick)
        load_plugins(metafunc.config.getoption("--hetero-plugin"))
        entry = registry.get(metafunc.config.getoption("--hetero-backend") or "")
        if entry is not None:  # and the cases its declarations add
            cases += declared.cases(entry, quick, cases)
        metafunc.parametrize("conformance_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def conformance_session(pytestconfig):
    backend = pytestconfig.getoption("--hetero-backend")
    if not backend:
        raise pytest.UsageError("hetero.conformance: pass --hetero-backend NAME")
    plugins = pytestconfig.getoption("--hetero-plugin")
    load_plugins(plugins)
    session = Session(backend, plugins, isolate=not pytestconfig.getoption("--hetero-no-isolate"))
    yield session
    session.close()
