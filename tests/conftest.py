"""Test-wide settings: offline and quiet, and TensorFlow as users run it (oneDNN on, its default on x86 Linux).

Set before TensorFlow is imported anywhere. No hub is reachable, so Hugging Face must never try the network.
The bit-identity tests (resume == uninterrupted, the same bytes on a re-run) hold with oneDNN on: each compares runs
in one process, or in processes with the same setting. A test that needs oneDNN off is marked `onednn_off`: it runs
in a child pytest with TF_ENABLE_ONEDNN_OPTS=0 (read when TensorFlow loads, so not switchable in this process), one
child for the marked tests of a module, and its reports come back here as if it had run in this process.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# the scripts tests start (python tools/x.py, python -c ...) import this checkout, not whichever one the venv's
# editable install points at
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]])

ONEDNN_OFF = "onednn_off"
_REPORTS_ENV = "T2I_TEST_ONEDNN_OFF_REPORTS"  # set in the child: where it writes its reports (JSON lines)
_child_reports_file = os.environ.pop(_REPORTS_ENV, None)  # popped: the child's own subprocesses must not write
_from_child: dict[str, list] = {}  # nodeid -> its reports from the child (parent side)
_config = None


def _onednn_on() -> bool:
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def pytest_configure(config):
    global _config
    _config = config
    config.addinivalue_line("markers", f"{ONEDNN_OFF}: needs TensorFlow's oneDNN kernels off; runs in a child "
                                       "pytest with TF_ENABLE_ONEDNN_OPTS=0 (tests/conftest.py)")


def pytest_runtest_logreport(report):
    if _child_reports_file:  # child side: hand every report to the parent
        data = _config.hook.pytest_report_to_serializable(config=_config, report=report)
        with open(_child_reports_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Parent side: a marked test's reports come from the child that ran its module's marked tests."""
    if item.get_closest_marker(ONEDNN_OFF) is None or not _onednn_on():
        return None
    if item.nodeid not in _from_child:
        _run_marked_in_child(item)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _from_child.pop(item.nodeid):
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _run_marked_in_child(item) -> None:
    config = item.config
    nodeids = [i.nodeid for i in item.session.items if i.path == item.path and i.get_closest_marker(ONEDNN_OFF)]
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports.jsonl"
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", _REPORTS_ENV: str(reports)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodeids],
                              cwd=config.rootpath, env=env, capture_output=True, text=True)
        lines = reports.read_text(encoding="utf-8").splitlines() if reports.exists() else []
    for line in lines:
        report = config.hook.pytest_report_from_serializable(config=config, data=json.loads(line))
        if isinstance(report.longrepr, list):  # a skip's (path, line, reason), a list after JSON
            report.longrepr = tuple(report.longrepr)
        _from_child.setdefault(report.nodeid, []).append(report)
    for nodeid in nodeids:
        if nodeid not in _from_child:  # the child died before reporting it: fail it with the child's output
            why = f"the oneDNN-off child exited {proc.returncode} without reporting {nodeid}:\n" \
                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            _from_child[nodeid] = [pytest.TestReport(nodeid, (str(item.path), None, nodeid), {}, "failed", why, "call")]
