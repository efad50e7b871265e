"""hetero's pytest plugin pins one device per pytest-xdist worker (HETERO_TEST_DEVICES)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("xdist")

WORKER_TEST = '''
import os
import pytest

@pytest.mark.parametrize("i", range(6))
def test_sees_its_own_device(i):
    worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == str(worker % 2)
    assert os.environ["HIP_VISIBLE_DEVICES"] == str(worker % 2)
    print("worker", worker, "device", os.environ["CUDA_VISIBLE_DEVICES"])
'''


def test_each_xdist_worker_sees_one_device(tmp_path):
    (tmp_path / "test_devices.py").write_text(WORKER_TEST)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")}
    env["HETERO_TEST_DEVICES"] = "2"
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
                          "-rA", str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "6 passed" in run.stdout
    assert "worker 0 device 0" in run.stdout and "worker 1 device 1" in run.stdout
