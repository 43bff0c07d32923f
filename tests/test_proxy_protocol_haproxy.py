"""Real HAProxy in front of a cysocketserver server: ``send-proxy`` (v1) and ``send-proxy-v2``
(with its CRC32c TLV).  The client connects from 127.0.0.7, so the address the handler reports
can only come from the header.  Skipped where haproxy is not installed (.ci/run installs it)."""
import ast
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from support_net import HOST, TIMEOUT, recv_until_eof, serving

HAPROXY = shutil.which("haproxy") or next(
    (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(path)),
    None)
pytestmark = pytest.mark.skipif(HAPROXY is None,
                                reason="haproxy is not installed (apt-get install haproxy)")
CLIENT_SOURCE = "127.0.0.7"


def _free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _config(upstream_port, v1_port, v2_port):
    return f"""
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend front_v1
    bind {HOST}:{v1_port}
    default_backend back_v1
backend back_v1
    server app {HOST}:{upstream_port} send-proxy
frontend front_v2
    bind {HOST}:{v2_port}
    default_backend back_v2
backend back_v2
    server app {HOST}:{upstream_port} send-proxy-v2 proxy-v2-options crc32c
"""


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


@pytest.fixture
def haproxy_in_front(cy_ss):
    class Report(cy_ss.StreamRequestHandler):
        def handle(self):
            header = self.server.proxy_header(self.request)
            line = self.rfile.readline()
            self.wfile.write(repr((self.client_address, header.version,
                                   [kind for kind, _ in header.tlvs], line)).encode())

    class Server(cy_ss.ThreadingTCPServer):
        proxy_protocol = "any"
        daemon_threads = True

    server = Server((HOST, 0), Report)
    v1_port, v2_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as directory, serving(server):
        path = os.path.join(directory, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(_config(server.server_address[1], v1_port, v2_port))
        process = subprocess.Popen([HAPROXY, "-db", "-f", path], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        try:
            _wait_listening(v1_port, process)
            _wait_listening(v2_port, process)
            yield server, {"v1": v1_port, "v2": v2_port}
        finally:
            process.terminate()
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


def _through(port):
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((CLIENT_SOURCE, 0))
        sock.connect((HOST, port))
        local = sock.getsockname()
        sock.sendall(b"hello through haproxy\n")
        reply = recv_until_eof(sock)
    return ast.literal_eval(reply.decode()), local


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_handler_sees_the_client_behind_haproxy(haproxy_in_front, version):
    server, ports = haproxy_in_front
    for _ in range(3):
        (address, got_version, tlv_types, line), local = _through(ports[version])
        assert address == local and address[0] == CLIENT_SOURCE
        assert got_version == int(version[1])
        assert line == b"hello through haproxy\n"
        if version == "v2":
            assert 0x03 in tlv_types  # HAProxy's CRC32c, verified on the way in
    assert sum(server.proxy_protocol_refused.values()) == 0
