"""Real HAProxy in front of a cysocketserver server: ``send-proxy`` (v1) and ``send-proxy-v2``
(with its CRC32c TLV).  The client connects from 127.0.0.7, so the address the handler reports
can only come from the header.  Skipped where haproxy is not installed (.ci/run installs it)."""
import ast
import socket

import pytest

from support_haproxy import HAPROXY, SKIP_REASON, free_port, running
from support_net import HOST, TIMEOUT, recv_until_eof, serving

pytestmark = pytest.mark.skipif(HAPROXY is None, reason=SKIP_REASON)
CLIENT_SOURCE = "127.0.0.7"


def _config(upstream_port, v1_port, v2_port):
    return f"""
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
    v1_port, v2_port = free_port(), free_port()
    with serving(server), running(_config(server.server_address[1], v1_port, v2_port),
                                  v1_port, v2_port):
        yield server, {"v1": v1_port, "v2": v2_port}


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
