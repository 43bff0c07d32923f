"""CPython's own test.test_socketserver, run against cysocketserver (and the stdlib as a control).

Each run happens in a subprocess that installs the module under test as
``sys.modules['socketserver']`` before importing the suite.
"""
import os
import re
import subprocess
import sys

import pytest

from support_net import subprocess_env

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_cpython_suite.py")
MIN_TESTS = 20
SUBPROCESS_TIMEOUT = 240


def run_suite(target, no_extensions):
    env = subprocess_env(CYSOCKETSERVER_NO_EXTENSIONS="1" if no_extensions else None)
    try:
        proc = subprocess.run(
            [sys.executable, RUNNER, target],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"CPython suite hung for {SUBPROCESS_TIMEOUT}s:\n{exc.stderr}")
    if proc.returncode == 3:
        pytest.skip(f"test.test_socketserver unavailable: {proc.stdout.strip()}")
    return proc


@pytest.mark.parametrize(
    "target,no_extensions,expected_impl",
    [
        pytest.param("socketserver", False, "stdlib", id="stdlib-control"),
        pytest.param("cysocketserver", False, "compiled", id="cy-compiled"),
        pytest.param("cysocketserver", True, "python", id="cy-pure-python"),
    ],
)
def test_cpython_socketserver_suite(target, no_extensions, expected_impl):
    proc = run_suite(target, no_extensions)
    report = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, report
    ran = re.search(r"^Ran (\d+) tests? in ", proc.stderr, re.M)
    assert ran, report
    assert int(ran.group(1)) > MIN_TESTS, report
    summary = re.search(
        r"SUITE-RESULT ran=(\d+) failures=(\d+) errors=(\d+) skipped=(\d+) implementation=(\w+)",
        proc.stdout,
    )
    assert summary, report
    ran_n, failures, errors, skipped, implementation = summary.groups()
    assert int(ran_n) == int(ran.group(1))
    assert (int(failures), int(errors)) == (0, 0), report
    # No silent fallback: the compiled run really ran the compiled engine.
    if expected_impl == "compiled" and os.environ.get("CYSOCKETSERVER_NO_EXTENSIONS"):
        pytest.skip("CYSOCKETSERVER_NO_EXTENSIONS is set for this test run")
    assert implementation == expected_impl, report
    # Most of the suite must actually run, not be skipped.
    assert int(skipped) <= int(ran_n) // 4, report
