"""``pytest --pyargs hetero.conformance --hetero-backend NAME``: one test per case.

Options (added by the ``hetero_pytest`` plugin): ``--hetero-backend NAME`` (required),
``--hetero-quick``, ``--hetero-plugin MODULE:ATTR`` (repeatable) and
``--hetero-no-isolate``. Cases run in a worker process,
so a crash fails its test instead of ending the session. NotSupported cases are skipped
with the backend's reason.
"""

from __future__ import annotations

import pytest

from .cases import all_cases
from .runner import Session, load_plugins


def pytest_generate_tests(metafunc):
    if "conformance_case" in metafunc.fixturenames:
        cases = all_cases(metafunc.config.getoption("--hetero-quick"))
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
