"""pytest plugin (entry point ``pytest11``) adding the options of
``pytest --pyargs hetero.conformance --hetero-backend NAME``, and one device per
pytest-xdist worker.

Options must be known before pytest reads the command line, so they live here, in a
module that imports nothing heavy; the fixtures are in ``hetero/conformance/conftest.py``.

Devices: with ``HETERO_TEST_DEVICES=N`` (the GPUs of the host), each pytest-xdist
worker ``gwK`` sees only device ``K mod N``: ``CUDA_VISIBLE_DEVICES`` and
``HIP_VISIBLE_DEVICES`` are set in the worker before any test runs, so before CUDA or
HIP starts (``pytest -n N``: the suite spread over N GPUs, one process each).
"""

import os


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    devices = os.environ.get("HETERO_TEST_DEVICES")
    if worker.startswith("gw") and devices:
        try:
            count = int(devices)
        except ValueError:
            raise ValueError(f"HETERO_TEST_DEVICES: expected a number of devices, "
                             f"got {devices!r}") from None
        if count < 1:
            raise ValueError(f"HETERO_TEST_DEVICES: expected at least 1, got {count}")
        device = str(int(worker[2:]) % count)
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["HIP_VISIBLE_DEVICES"] = device


def pytest_addoption(parser):
    group = parser.getgroup("hetero conformance")
    group.addoption("--hetero-backend", help="backend to judge (see `hetero info`)")
    group.addoption("--hetero-quick", action="store_true", help="the quick subset")
    group.addoption("--hetero-plugin", action="append", default=[],
                    help="register a MODULE:ATTR backend or op spec first (repeatable)")
    group.addoption("--hetero-no-isolate", action="store_true",
                    help="run cases in the pytest process")
