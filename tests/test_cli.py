"""``python -m cysocketserver``: the echo command serves, and only the bench command loads the bench."""
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from support_net import TIMEOUT, request_reply, subprocess_env


def read_line(proc, deadline):
    line = b""
    fd = proc.stdout.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, "the command printed nothing in time"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, "the command exited before it printed its line"
            line += chunk
    return line.decode()


@pytest.fixture
def echo_command(tmp_path):
    """Start ``python -X importtime -m cysocketserver echo``; yields (its address, stderr path)."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        # -X importtime: every module the command imports is written to stderr as it is imported.
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "cysocketserver", "echo", "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, env=subprocess_env(), cwd=str(tmp_path))
    try:
        line = read_line(proc, time.monotonic() + TIMEOUT)
        host_port = line.split(" on ", 1)[1].split(";", 1)[0]
        host, port = host_port.rsplit(":", 1)
        yield (host, int(port)), err_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def imported_modules(stderr_text):
    names = set()
    for line in stderr_text.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_echo_serves_without_importing_the_bench(echo_command):
    address, err_path = echo_command
    assert request_reply(address, b"hello\n") == b"hello\n"
    modules = imported_modules(err_path.read_text())
    assert "cysocketserver" in modules  # -X importtime did report the imports
    assert not {m for m in modules if m.startswith("cysocketserver.bench")
                or m == "cysocketserver._loadgen"}, sorted(modules)


def test_bench_command_lists_its_workloads():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver", "bench", "--list"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "line-16x64" in proc.stdout


def test_bench_subpackage_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver.bench", "--list"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "line-16x64" in proc.stdout


def test_help_names_both_commands():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver", "--help"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "echo" in proc.stdout and "bench" in proc.stdout
