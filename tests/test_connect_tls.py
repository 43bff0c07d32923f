"""``connect(ssl_context=...)``: a TLS client connection, cooperative in a greenlet and a plain
ssl.SSLSocket in a thread, its handshake within connect_timeout, a PROXY header before the
ClientHello; on both engines."""
import socket
import ssl
import threading
import time

import pytest

from support_net import HOST, TIMEOUT, serving
from support_greenlet import drop_thread_hub as _drop_thread_hub
from support_tls import client_context, make_certificate, server_context

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
import cysocketserver.greenlets as greenlets  # noqa: E402
from cysocketserver.green.tls import GreenTLSSocket  # noqa: E402


@pytest.fixture(scope="module")
def localhost_files(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"), "localhost", ip="127.0.0.1")


@pytest.fixture(params=["plain", "green"])
def either(request, cy_ss):
    _drop_thread_hub()
    try:
        if request.param == "green":
            greenlets.get_hub()
        yield request.param
    finally:
        _drop_thread_hub()


def echo_server(ss, context, **attrs):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    cls = type("S", (ss.ThreadingTCPServer,), dict(ssl_context=context, daemon_threads=True,
                                                   **attrs))
    return cls((HOST, 0), Echo)


def test_a_tls_connection_in_a_greenlet_and_in_a_thread(either, cy_ss, localhost_files):
    with echo_server(cy_ss, server_context(localhost_files)) as server, serving(server):
        sock = cysocketserver.connect(("localhost", server.server_address[1]), timeout=TIMEOUT,
                                      ssl_context=client_context(localhost_files))
        with sock:
            assert isinstance(sock, GreenTLSSocket if either == "green" else ssl.SSLSocket)
            assert sock.gettimeout() == TIMEOUT
            assert sock.server_hostname == "localhost"      # the name of the address
            sock.sendall(b"hello over tls\n")
            data = b""
            while not data.endswith(b"\n"):
                data += sock.recv(100)
            assert data == b"hello over tls\n"
            assert sock.version() in ("TLSv1.2", "TLSv1.3")


def test_an_ip_address_with_a_server_hostname(either, cy_ss, localhost_files):
    with echo_server(cy_ss, server_context(localhost_files)) as server, serving(server):
        with cysocketserver.connect(server.server_address, timeout=TIMEOUT,
                                    ssl_context=client_context(localhost_files),
                                    server_hostname="localhost") as sock:
            sock.sendall(b"x\n")
            assert sock.recv(10) == b"x\n"


def test_a_certificate_for_another_name_is_refused(either, cy_ss, localhost_files):
    with echo_server(cy_ss, server_context(localhost_files)) as server, serving(server):
        with pytest.raises(ssl.SSLCertVerificationError):
            cysocketserver.connect(server.server_address, connect_timeout=TIMEOUT,
                                   ssl_context=client_context(localhost_files),
                                   server_hostname="other.test")


def test_an_untrusted_certificate_is_refused(either, cy_ss, localhost_files):
    with echo_server(cy_ss, server_context(localhost_files)) as server, serving(server):
        with pytest.raises(ssl.SSLCertVerificationError):
            cysocketserver.connect(("localhost", server.server_address[1]),
                                   connect_timeout=TIMEOUT,
                                   ssl_context=ssl.create_default_context())


def test_the_handshake_is_within_connect_timeout(either):
    # A listener that accepts (the kernel does) and never answers the ClientHello.
    with socket.create_server((HOST, 0)) as listener:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            cysocketserver.connect(listener.getsockname(), connect_timeout=0.3,
                                   ssl_context=ssl.create_default_context(),
                                   server_hostname="localhost")
        assert 0.25 <= time.monotonic() - start < 2.0


def test_a_plain_text_server_is_an_ssl_error(either):
    with socket.create_server((HOST, 0)) as listener:
        def answer():
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(ssl.SSLError):
            cysocketserver.connect(listener.getsockname(), connect_timeout=TIMEOUT,
                                   ssl_context=ssl.create_default_context(),
                                   server_hostname="localhost")
        thread.join(TIMEOUT)


def test_the_proxy_header_goes_before_the_client_hello(either, cy_ss, localhost_files):
    seen = []

    class Echo(cy_ss.StreamRequestHandler):
        def handle(self):
            seen.append(self.client_address)
            for line in self.rfile:
                self.wfile.write(line)

    cls = type("S", (cy_ss.ThreadingTCPServer,),
               dict(ssl_context=server_context(localhost_files), proxy_protocol="v2",
                    daemon_threads=True))
    with cls((HOST, 0), Echo) as server, serving(server):
        with cysocketserver.connect(server.server_address, timeout=TIMEOUT,
                                    ssl_context=client_context(localhost_files),
                                    server_hostname="localhost", proxy_protocol="v2",
                                    proxy_addresses=(("203.0.113.7", 5555),
                                                     ("192.0.2.1", 443))) as sock:
            sock.sendall(b"x\n")
            assert sock.recv(10) == b"x\n"
    assert seen == [("203.0.113.7", 5555)]


def test_the_arguments_are_checked(cy_ss):
    with pytest.raises(TypeError):
        cysocketserver.connect((HOST, 1), ssl_context="yes")
    with pytest.raises(ValueError):
        cysocketserver.connect((HOST, 1), server_hostname="a.test")
    with pytest.raises(TypeError):
        cysocketserver.connect((HOST, 1), ssl_context=ssl.create_default_context(),
                               server_hostname=b"a.test")
