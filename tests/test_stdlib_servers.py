"""After ``cysocketserver.install()``, the stdlib's own servers run on cysocketserver.

Each case runs in its own interpreter (see support_stdlib_servers.py) so the
test process's ``sys.modules`` never sees the replacement.  The ``stdlib``
runs are a control: the same client checks against the untouched stdlib.
"""
import os
import subprocess
import sys

import pytest

from support_net import subprocess_env

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_stdlib_servers.py")
CASES = ["http_files", "http_post", "https", "xmlrpc", "wsgiref", "logging_config", "install",
         "http_keepalive"]
SUBPROCESS_TIMEOUT = 120


def run_case(mode, case, **env):
    try:
        proc = subprocess.run(
            [sys.executable, RUNNER, mode, case],
            env=subprocess_env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{case} hung for {SUBPROCESS_TIMEOUT}s:\n{exc.stdout}\n{exc.stderr}")
    report = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, report
    if "CASE-SKIP" in proc.stdout:
        pytest.skip(proc.stdout.split("CASE-SKIP", 1)[1].splitlines()[0].strip())
    assert f"CASE-OK {case}" in proc.stdout, report
    return proc


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["stdlib", "cy"])
def test_stdlib_server(mode, case):
    run_case(mode, case)


@pytest.mark.parametrize("case", CASES)
def test_stdlib_server_pure_python_engine(case):
    proc = run_case("cy", case, CYSOCKETSERVER_NO_EXTENSIONS="1")
    assert "implementation=python" in proc.stdout


def test_install_in_fresh_interpreter_is_idempotent():
    code = (
        "import sys, cysocketserver\n"
        "cysocketserver.install(); cysocketserver.install()\n"
        "assert sys.modules['socketserver'] is cysocketserver\n"
        "import socketserver, http.server\n"
        "assert socketserver is cysocketserver\n"
        "assert http.server.HTTPServer.__mro__[1] is cysocketserver.TCPServer\n"
        "print('fine')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fine"
