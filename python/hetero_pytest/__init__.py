"""pytest plugin (entry point ``pytest11``) adding the options of
``pytest --pyargs hetero.conformance --hetero-backend NAME``.

Options must be known before pytest reads the command line, so they live here, in a
module that imports nothing heavy; the fixtures are in ``hetero/conformance/conftest.py``.
"""


def pytest_addoption(parser):
    group = parser.getgroup("hetero conformance")
    group.addoption("--hetero-backend", help="backend to judge (see `hetero info`)")
    group.addoption("--hetero-quick", action="store_true", help="the quick subset")
    group.addoption("--hetero-plugin", action="append", default=[],
                    help="register a MODULE:ATTR backend or op spec first (repeatable)")
    group.addoption("--hetero-no-isolate", action="store_true",
                    help="run cases in the pytest process")
