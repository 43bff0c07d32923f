"""A real HAProxy for the tests that put one in front of or behind our servers.

``HAPROXY`` is its path (None where it is not installed: those tests skip, saying so);
``running(config, *ports)`` runs it on a ``mode tcp`` configuration (the global and defaults
sections are added here) until it listens on every one of ``ports``, and stops it afterwards.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from support_net import HOST, TIMEOUT

HAPROXY = shutil.which("haproxy") or next(
    (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(path)),
    None)
SKIP_REASON = "haproxy is not installed (apt-get install haproxy)"

_PREAMBLE = """
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
"""


def free_port():
    """A loopback port nothing listens on now (for HAProxy's frontends)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait_listening(port, process):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("haproxy exited: %s" % process.stdout.read().decode(errors="replace"))
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("haproxy did not listen on %d" % port)


@contextlib.contextmanager
def running(config, *ports):
    """HAProxy on ``config`` (its frontends and backends), once it listens on ``ports``."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(_PREAMBLE + config)
        process = subprocess.Popen([HAPROXY, "-db", "-f", path], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        try:
            for port in ports:
                _wait_listening(port, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
