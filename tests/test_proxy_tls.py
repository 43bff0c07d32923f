"""``proxy`` with TLS, as operators run it (real processes, loopback): terminating clients' TLS
(--tls-cert), TLS to the upstreams (--upstream-tls), and TLS passed through untouched, routed by
the server name in the ClientHello (--sni)."""
import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from support_net import HOST, TIMEOUT, subprocess_env
from support_tls import client_context, make_certificate, server_context
from test_proxy_command import _Tell, _Upstream, address, hello, proxy, stop_upstream

pytest.importorskip("greenlet")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """{name: (certificate, key)} for localhost (and 127.0.0.1), a.test, b.test, default.test."""
    where = tmp_path_factory.mktemp("tls")
    files = {"localhost": make_certificate(where, "localhost", ip="127.0.0.1")}
    for name in ("a.test", "b.test", "default.test"):
        files[name] = make_certificate(where, name)
    return files


@contextlib.contextmanager
def upstream(name, files=None):
    """An upstream saying "NAME CLIENT_HOST" then echoing; over TLS with ``files``."""
    attrs = {"ssl_context": server_context(files)} if files else {}
    server = type("Up", (_Upstream,), attrs)((HOST, 0), _Tell)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        stop_upstream(server)


def tls_client(port, context, name):
    raw = socket.create_connection((HOST, port), timeout=TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname=name)
    except BaseException:
        raw.close()
        raise


def echoes(sock, payload=b"through the proxy\n"):
    sock.sendall(payload)
    data = b""
    while len(data) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data == payload


def test_the_proxy_terminates_tls_in_front_of_a_plain_upstream(certificates):
    files = certificates["localhost"]
    with upstream("plain") as up, proxy("--upstream", address(up), "--tls-cert", files[0],
                                        "--tls-key", files[1],
                                        "--health-check-interval", "0") as running:
        with tls_client(running.port, client_context(files), "localhost") as tls:
            assert hello(tls) == ("plain", HOST)         # the upstream's plain text, decrypted
            assert echoes(tls)
            assert echoes(tls, 300_000 * b"x")
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        # A client that does not trust the proxy's certificate gets nowhere.
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_client(running.port, client_context(certificates["a.test"]), "localhost")


def test_the_proxy_speaks_tls_to_its_upstream(certificates):
    files = certificates["localhost"]
    with upstream("secure", files) as up, proxy(
            "--upstream", address(up), "--upstream-tls", "--upstream-ca", files[0],
            "--health-check-interval", "0") as running:
        with running.connect() as sock:
            assert hello(sock) == ("secure", HOST)
            assert echoes(sock)
            assert echoes(sock, 300_000 * b"y")


def test_an_upstream_whose_certificate_does_not_verify_is_not_used(certificates):
    with upstream("wrong", certificates["localhost"]) as up, proxy(
            "--upstream", address(up), "--upstream-tls",
            "--upstream-ca", certificates["a.test"][0], "--retries", "0",
            "--health-check-interval", "0") as running:
        with running.connect() as sock:
            assert sock.recv(100) == b""                 # closed: no upstream took it
        status, err = running.stop()
        assert status == 0
        assert "CERTIFICATE_VERIFY_FAILED" in err or "certificate verify failed" in err, err


def test_tls_passed_through_by_server_name(certificates):
    with upstream("A", certificates["a.test"]) as a, \
            upstream("B", certificates["b.test"]) as b, \
            upstream("D", certificates["default.test"]) as default, \
            proxy("--sni", "a.test=%s" % address(a), "--sni", "B.Test=%s" % address(b),
                  "--upstream", address(default), "--health-check-interval", "0") as running:
        # Each client trusts only the certificate of the name it asks for: the handshake is
        # the upstream's own, end to end.
        for name, who in (("a.test", "A"), ("b.test", "B"), ("a.test", "A")):
            with tls_client(running.port, client_context(certificates[name]), name) as tls:
                assert hello(tls) == (who, HOST)
                assert echoes(tls)
        with tls_client(running.port, client_context(certificates["default.test"]),
                        "default.test") as tls:
            assert hello(tls) == ("D", HOST)                # no route: the default
        with pytest.raises(ssl.SSLCertVerificationError):
            # Asking for b.test but trusting only a.test's certificate: B's is not A's.
            tls_client(running.port, client_context(certificates["a.test"]), "b.test")


def test_a_client_that_sends_no_client_hello_is_closed(certificates):
    with upstream("A", certificates["a.test"]) as a, proxy(
            "--sni", "a.test=%s" % address(a), "--upstream", address(a),
            "--client-hello-timeout", "0.5", "--health-check-interval", "0") as running:
        with running.connect() as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.recv(100) == b""
        with running.connect() as sock:
            start = time.monotonic()
            assert sock.recv(100) == b""                 # silent: closed after the timeout
            assert 0.4 <= time.monotonic() - start < 5
        with running.connect() as sock:                  # a half ClientHello, then nothing
            hello_bytes = make_client_hello("a.test")
            sock.sendall(hello_bytes[:len(hello_bytes) // 2])
            assert sock.recv(100) == b""
        # The proxy still serves.
        with tls_client(running.port, client_context(certificates["a.test"]), "a.test") as tls:
            assert hello(tls) == ("A", HOST)
        status, err = running.stop()
        assert status == 0
        assert "no TLS ClientHello" in err, err


def test_the_tls_options_are_checked(certificates, tmp_path):
    files = certificates["localhost"]
    for args, words in [
            (["--sni", "a.test=127.0.0.1:1", "--tls-cert", files[0]], "not with tls-cert"),
            (["--upstream-ca", files[0]], "only with upstream-tls"),
            (["--sni", "nonsense"], "NAME=HOST:PORT"),
            (["--tls-cert", str(tmp_path / "missing.pem")], "cannot read"),
            (["--tls-cert", files[0], "--tls-key", files[1], "--server", "threading"],
             "need --server greenlet")]:
        done = subprocess.run([sys.executable, "-m", "cysocketserver", "proxy", "--listen",
                               "%s:0" % HOST, "--upstream", "127.0.0.1:1", *args],
                              capture_output=True, timeout=TIMEOUT, env=subprocess_env())
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr.decode(), (args, done.stderr)


def make_client_hello(name):
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()

