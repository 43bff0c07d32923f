"""TLS on the servers (``ssl_context``): real clients (Python's ssl, openssl s_client, curl) over
loopback, on both engines, with a certificate made at run time."""
import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

import support_tls

from support_net import (HAVE_FORK, HAVE_UNIX, HOST, TIMEOUT, connect, recv_until_eof, serving,
                         subprocess_env, wait_for)

STREAM_SERVERS = ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer"]
if HAVE_FORK:
    STREAM_SERVERS.append("ForkingTCPServer")
UNIX_SERVERS = ["UnixStreamServer", "ThreadingUnixStreamServer", "GreenletUnixStreamServer"]


# --------------------------------------------------------------------------- certificates


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """(certificate, key): a throwaway self-signed P-256 pair for localhost and 127.0.0.1."""
    return support_tls.make_certificate(tmp_path_factory.mktemp("tls"), "localhost",
                                        ip="127.0.0.1")


@pytest.fixture(scope="session")
def server_context(tls_files):
    return support_tls.server_context(tls_files)


@pytest.fixture(scope="session")
def client_context(tls_files):
    return support_tls.client_context(tls_files)


def tls_connect(context, address, family=socket.AF_INET, timeout=TIMEOUT, **wrap):
    raw = connect(address, family, timeout)
    try:
        return context.wrap_socket(raw, server_hostname="localhost", **wrap)
    except BaseException:
        raw.close()
        raise


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def echo_handler(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    return Echo


def make_server(ss, name, context, handler=None, address=(HOST, 0), **attrs):
    attrs.setdefault("request_queue_size", 64)
    cls = type("S", (getattr(ss, name),), dict(ssl_context=context, **attrs))
    return cls(address, handler or echo_handler(ss))


def half_close(tls):
    """End a client's side the way a forking server's child sees it: close_notify, then FIN
    (the test's process shares the child's copy of the client's descriptor)."""
    with contextlib.suppress(OSError, ValueError):
        tls.unwrap()


# --------------------------------------------------------------------------- every family


@pytest.mark.parametrize("name", STREAM_SERVERS)
def test_every_family_echoes_over_tls(cy_ss, name, server_context, client_context):
    server = make_server(cy_ss, name, server_context)
    with serving(server):
        for round_ in range(3):
            with tls_connect(client_context, server.server_address) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                tls.sendall(b"hello %d\n" % round_)
                assert read_line(tls) == b"hello %d\n" % round_
                half_close(tls)
    if name != "ForkingTCPServer":  # the children count their own
        figures = server.stats()
        assert figures["tls_handshakes_total"] == 3
        assert figures["tls_handshake_failures_total"] == 0


@pytest.mark.skipif(not HAVE_UNIX, reason="no Unix sockets")
@pytest.mark.parametrize("name", UNIX_SERVERS)
def test_unix_stream_servers_echo_over_tls(cy_ss, name, server_context, client_context,
                                           short_tmp):
    path = os.path.join(short_tmp, "tls.sock")
    server = make_server(cy_ss, name, server_context, address=path)
    with serving(server):
        with tls_connect(client_context, path, socket.AF_UNIX) as tls:
            tls.sendall(b"over unix\n")
            assert read_line(tls) == b"over unix\n"
    assert server.stats()["tls_handshakes_total"] == 1


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer", "TCPServer"])
def test_handler_and_verify_request_see_the_tls_socket_after_the_handshake(
        cy_ss, name, server_context, client_context):
    seen = []

    class Report(cy_ss.BaseRequestHandler):
        def handle(self):
            self.request.sendall(self.request.version().encode() + b"\n")

    class S(getattr(cy_ss, name)):
        ssl_context = server_context

        def verify_request(self, request, client_address):
            seen.append((isinstance(request, ssl.SSLSocket), request.version()))
            return True

    server = S((HOST, 0), Report)
    with serving(server):
        with tls_connect(client_context, server.server_address) as tls:
            assert read_line(tls) == tls.version().encode() + b"\n"
    assert seen == [(True, seen[0][1])] and seen[0][1] is not None


# --------------------------------------------------------------------------- bad clients


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer"])
def test_silent_clients_are_cut_after_the_timeout_while_others_are_served(
        cy_ss, name, server_context, client_context):
    server = make_server(cy_ss, name, server_context, tls_handshake_timeout=0.5)
    with serving(server):
        silent = [connect(server.server_address) for _ in range(3)]
        try:
            started = time.monotonic()
            with tls_connect(client_context, server.server_address) as tls:
                tls.sendall(b"served\n")
                assert read_line(tls) == b"served\n"
            assert time.monotonic() - started < 0.5, "a silent client held up the others"
            for sock in silent:
                assert recv_until_eof(sock) == b""  # closed by the server
            waited = time.monotonic() - started
            assert 0.3 < waited < TIMEOUT
        finally:
            for sock in silent:
                sock.close()
        assert wait_for(lambda: server.stats()["tls_handshake_failures"].get("timeout") == 3)


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer", "TCPServer"])
def test_plain_text_clients_are_refused_counted_and_logged_once(
        cy_ss, name, server_context, client_context, caplog):
    server = make_server(cy_ss, name, server_context)
    with caplog.at_level(logging.WARNING, logger="cysocketserver"), serving(server):
        for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"hello\n", b"\0" * 64):
            for _ in range(2):
                with connect(server.server_address) as sock:
                    sock.sendall(payload)
                    assert recv_until_eof(sock) == b""
        with tls_connect(client_context, server.server_address) as tls:
            tls.sendall(b"still serving\n")
            assert read_line(tls) == b"still serving\n"
        assert wait_for(lambda: server.stats()["tls_handshake_failures"].get("not_tls") == 6)
    records = [r for r in caplog.records if r.name == "cysocketserver"]
    assert len(records) == 1 and "not_tls" in records[0].getMessage()
    assert records[0].exc_info is None


def test_a_client_that_distrusts_the_certificate_is_counted(cy_ss, server_context):
    server = make_server(cy_ss, "ThreadingTCPServer", server_context)
    strict = ssl.create_default_context()  # the system's CAs: not our self-signed certificate
    with serving(server):
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(strict, server.server_address)
        assert wait_for(lambda: server.stats()["tls_handshake_failures"].get("alert") == 1)


# --------------------------------------------------------------------------- large transfers


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer"])
def test_8_mib_through_tls_every_byte_checked(cy_ss, name, server_context, client_context):
    size = 8 << 20
    pattern = bytes(range(251)) * (size // 251 + 1)
    payload = pattern[:size]

    class Sink(cy_ss.StreamRequestHandler):
        def handle(self):
            # Take it all, then send it all back in one sendall().
            data = self.rfile.read(size)
            self.request.sendall(data)

    server = make_server(cy_ss, name, server_context, handler=Sink)
    with serving(server):
        with tls_connect(client_context, server.server_address) as tls:
            # All of it first: the handler reads it all before it answers (an SSL socket is
            # not for reading and writing from two threads at once).
            tls.sendall(payload)
            chunks, got = [], 0
            while got < size:
                chunk = tls.recv(1 << 16)
                assert chunk, "the stream ended after %d bytes" % got
                chunks.append(chunk)
                got += len(chunk)
            assert b"".join(chunks) == payload
    if name == "GreenletTCPServer":
        # The cooperative TLS socket counts what it moves, as the plain one does.
        figures = server.stats()
        assert figures["bytes_received_total"] == size
        assert figures["bytes_sent_total"] == size


# --------------------------------------------------------------------------- closing


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer"])
def test_close_notify_both_ways(cy_ss, name, server_context, client_context):
    ended = []

    class UntilClosed(cy_ss.BaseRequestHandler):
        def handle(self):
            while True:
                data = self.request.recv(100)
                if not data:
                    ended.append("close_notify")  # the client's close_notify: a clean end
                    return
                self.request.sendall(data)

    class Greeter(cy_ss.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"bye\n")

    # The client's close_notify ends the handler's reads; the server answers with its own,
    # so the client's unwrap() completes.
    server = make_server(cy_ss, name, server_context, handler=UntilClosed)
    with serving(server):
        with tls_connect(client_context, server.server_address) as tls:
            tls.sendall(b"x")
            assert tls.recv(1) == b"x"
            plain = tls.unwrap()
            assert recv_until_eof(plain) == b""
        assert wait_for(lambda: ended == ["close_notify"])
    # When the handler is done the server says so with close_notify: no truncation.
    server = make_server(cy_ss, name, server_context, handler=Greeter)
    with serving(server):
        with tls_connect(client_context, server.server_address,
                         suppress_ragged_eofs=False) as tls:
            assert read_line(tls) == b"bye\n"
            assert tls.recv(100) == b""  # close_notify, not SSLEOFError


def test_unwrap_of_a_silent_peer_is_bounded(cy_ss, server_context, client_context):
    outcome = []

    class Unwrap(cy_ss.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(0.3)
            started = time.monotonic()
            try:
                self.request.unwrap()
                outcome.append("unwrapped")
            except (TimeoutError, ssl.SSLError, OSError) as exc:
                outcome.append(type(exc).__name__)
            outcome.append(time.monotonic() - started)

    server = make_server(cy_ss, "GreenletTCPServer", server_context, handler=Unwrap)
    with serving(server):
        with tls_connect(client_context, server.server_address) as tls:
            # Never answers the server's close_notify.
            assert wait_for(lambda: len(outcome) == 2)
    assert outcome[0] == "TimeoutError" and outcome[1] < 0.3 + 2.0


# --------------------------------------------------------------------------- PROXY, then TLS


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer", "TCPServer"])
def test_proxy_header_then_tls(cy_ss, name, server_context, client_context):
    class Report(cy_ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(("%s %d %s\n" % (self.client_address[0], self.client_address[1],
                                              self.request.version())).encode())

    server = make_server(cy_ss, name, server_context, handler=Report, proxy_protocol="v1")
    with serving(server):
        raw = connect(server.server_address)
        raw.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
        with client_context.wrap_socket(raw, server_hostname="localhost") as tls:
            reply = read_line(tls).decode().split()
    assert reply[:2] == ["192.0.2.1", "56324"] and reply[2].startswith("TLS")


# --------------------------------------------------------------------------- the stdlib way


def _stdlib_way_servers(ss, server_context):
    """Servers wrapped as the stdlib's users do: the listener, get_request(), setup()."""
    Echo = echo_handler(ss)

    wrapped = ss.ThreadingTCPServer((HOST, 0), Echo)
    wrapped.socket = server_context.wrap_socket(wrapped.socket, server_side=True)

    class InGetRequest(ss.ThreadingTCPServer):
        def get_request(self):
            sock, address = self.socket.accept()
            return server_context.wrap_socket(sock, server_side=True), address

    class InSetup(Echo):
        def setup(self):
            self.request = server_context.wrap_socket(self.request, server_side=True)
            super().setup()

    return [wrapped, InGetRequest((HOST, 0), Echo), ss.ThreadingTCPServer((HOST, 0), InSetup)]


def test_the_stdlib_way_keeps_working(ss, server_context, client_context):
    for server in _stdlib_way_servers(ss, server_context):
        with serving(server):
            with tls_connect(client_context, server.server_address) as tls:
                tls.sendall(b"the stdlib way\n")
                assert read_line(tls) == b"the stdlib way\n"


def test_a_wrapped_listener_takes_no_native_path_and_refuses_ssl_context_too(
        cy_ss, server_context):
    server = cy_ss.ThreadingTCPServer((HOST, 0), echo_handler(cy_ss))
    try:
        server.socket = server_context.wrap_socket(server.socket, server_side=True)
        from cysocketserver._loopcommon import INTAKE_HOOKS

        assert server._plan().intake == INTAKE_HOOKS
        server.ssl_context = server_context
        with pytest.raises(ValueError, match="wrapped twice"):
            server._plan()
    finally:
        server.server_close()


# --------------------------------------------------------------------------- settings


def test_settings_are_checked(cy_ss, server_context):
    server = make_server(cy_ss, "ThreadingTCPServer", server_context, tls_handshake_timeout=0)
    with server, pytest.raises(ValueError, match="tls_handshake_timeout"):
        server.handle_request()
    server = make_server(cy_ss, "ThreadingTCPServer", "not a context")
    with server, pytest.raises(TypeError, match="ssl_context"):
        server.handle_request()
    server = make_server(cy_ss, "UDPServer", server_context, handler=cy_ss.DatagramRequestHandler)
    with server, pytest.raises(ValueError, match="stream server"):
        server.handle_request()
    assert cy_ss.TCPServer.ssl_context is None and cy_ss.TCPServer.tls_handshake_timeout == 10.0


def test_bare_import_does_not_load_ssl():
    program = "import sys, cysocketserver; print('ssl' in sys.modules, '_ssl' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env=subprocess_env(), timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


# --------------------------------------------------------------------------- greenlets


def test_greenlet_server_stays_fast_with_silent_and_idle_tls_clients(
        cy_ss, server_context, client_context):
    server = make_server(cy_ss, "GreenletTCPServer", server_context, tls_handshake_timeout=5.0)
    with serving(server):
        # Ten that never start their handshake, ten that finish it and then say nothing.
        silent = [connect(server.server_address) for _ in range(10)]
        idle = [tls_connect(client_context, server.server_address) for _ in range(10)]
        try:
            with tls_connect(client_context, server.server_address) as tls:
                worst = 0.0
                for i in range(50):
                    started = time.monotonic()
                    tls.sendall(b"ping %d\n" % i)
                    assert read_line(tls) == b"ping %d\n" % i
                    worst = max(worst, time.monotonic() - started)
            print("worst round trip with 20 silent/idle TLS clients: %.1f ms" % (worst * 1e3))
            assert worst < 1.0
        finally:
            for sock in silent + idle:
                sock.close()


def test_greenlet_server_one_fast_tls_client_does_not_starve_the_others(
        cy_ss, server_context, client_context):
    """A client that keeps its handler's TLS socket always readable never makes that handler
    wait; the hub's I/O budget still gives the other handlers their turn."""
    stop = threading.Event()

    class EchoPings(cy_ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                if line.startswith(b"ping"):
                    self.wfile.write(line)

    server = make_server(cy_ss, "GreenletTCPServer", server_context, handler=EchoPings)

    def flood(tls):
        batch = (b"x" * 100 + b"\n") * 200
        while not stop.is_set():
            try:
                tls.sendall(batch)
            except (OSError, ValueError):
                return

    with serving(server):
        fast = tls_connect(client_context, server.server_address)
        writer = threading.Thread(target=flood, args=(fast,), daemon=True)
        writer.start()
        try:
            time.sleep(0.2)  # the flood is under way
            with tls_connect(client_context, server.server_address) as tls:
                worst = 0.0
                for i in range(20):
                    started = time.monotonic()
                    tls.sendall(b"ping %d\n" % i)
                    assert read_line(tls) == b"ping %d\n" % i
                    worst = max(worst, time.monotonic() - started)
            print("worst round trip beside a flooding TLS client: %.1f ms" % (worst * 1e3))
            assert worst < 1.0
        finally:
            stop.set()
            writer.join(TIMEOUT)
            half_close(fast)
            fast.close()


# --------------------------------------------------------------------------- figures


def test_stats_and_metrics(cy_ss, server_context, client_context):
    from cysocketserver.prometheus import prometheus_text

    server = make_server(cy_ss, "ThreadingTCPServer", server_context)
    with serving(server):
        assert server.stats()["tls_handshakes_total"] == 0
        for _ in range(2):
            with tls_connect(client_context, server.server_address) as tls:
                tls.sendall(b"x\n")
                read_line(tls)
                version = tls.version()
        with connect(server.server_address) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            recv_until_eof(sock)
        assert wait_for(lambda: server.stats()["tls_handshake_failures_total"] == 1)
    figures = server.stats()
    assert figures["tls_handshakes_total"] == 2
    assert figures["tls_versions"] == {version: 2}
    assert figures["tls_handshake_failures"] == {"not_tls": 1}
    text = prometheus_text({"web": server})
    assert 'cysocketserver_tls_handshakes_total{server="web",version="%s"} 2' % version in text
    assert 'cysocketserver_tls_handshake_failures_total{server="web",cause="not_tls"} 1' in text
    assert "# TYPE cysocketserver_tls_handshakes_total counter" in text
    # A server without TLS reports none of it.
    plain = cy_ss.TCPServer((HOST, 0), echo_handler(cy_ss))
    with plain:
        assert "tls_handshakes_total" not in plain.stats()
        assert "tls" not in prometheus_text(plain)


# --------------------------------------------------------------------------- other clients


def test_openssl_s_client(cy_ss, server_context, tls_files):
    import select

    server = make_server(cy_ss, "GreenletTCPServer", server_context)
    with serving(server):
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % server.server_address[1],
             "-CAfile", tls_files[0], "-verify_return_error", "-quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(b"from s_client\n")
            proc.stdin.flush()
            deadline = time.monotonic() + TIMEOUT
            reply = b""
            while not reply.endswith(b"\n") and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], 0.1)[0]:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    reply += chunk
        finally:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
    assert reply == b"from s_client\n"
    assert server.stats()["tls_handshakes_total"] == 1


_HTTPS_PROGRAM = r"""
import ssl, sys
import cysocketserver
cysocketserver.install()
import http.server
assert issubclass(http.server.HTTPServer, cysocketserver.TCPServer)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello over tls\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.ssl_context = context
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_curl_against_http_server_with_ssl_context_after_install(tls_files):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    proc = subprocess.Popen([sys.executable, "-c", _HTTPS_PROGRAM, *tls_files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    try:
        port = int(proc.stdout.readline())
        for url in ("https://localhost:%d/" % port, "https://127.0.0.1:%d/" % port):
            done = subprocess.run([curl, "-sS", "--max-time", "10", "--cacert", tls_files[0],
                                   url], capture_output=True, timeout=TIMEOUT * 2)
            assert done.returncode == 0, done.stderr
            assert done.stdout == b"hello over tls\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------------------------------- the command line


def _echo(*args):
    return subprocess.Popen([sys.executable, "-m", "cysocketserver", "echo", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env())


@pytest.mark.parametrize("more", [[], ["--server", "greenlet"], ["--workers", "2"]])
def test_echo_command_serves_tls(tls_files, client_context, more):
    proc = _echo("--tls-cert", tls_files[0], "--tls-key", tls_files[1], *more)
    try:
        line = proc.stdout.readline().decode()
        assert "+tls" in line, proc.stderr.read().decode() if proc.poll() is not None else line
        port = int(line.split(" on ")[1].split(";")[0].rsplit(":", 1)[1])
        for _ in range(3):
            with tls_connect(client_context, (HOST, port)) as tls:
                tls.sendall(b"echo over tls\n")
                assert read_line(tls) == b"echo over tls\n"
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("which", ["missing", "bad"])
def test_echo_command_bad_tls_files_are_one_line_and_exit_2(tmp_path, tls_files, which):
    if which == "missing":
        args = ["--tls-cert", str(tmp_path / "nothing.pem")]
    else:
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        args = ["--tls-cert", str(junk), "--tls-key", tls_files[1]]
    proc = subprocess.run([sys.executable, "-m", "cysocketserver", "echo", "--port", "0", *args],
                          capture_output=True, text=True, timeout=TIMEOUT * 2,
                          env=subprocess_env())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS" in lines[0], proc.stderr
