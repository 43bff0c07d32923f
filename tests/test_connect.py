"""connect(): an upstream connection with a connect deadline and, for a proxy, a PROXY header.

Real sockets on the loopback only.  A connect that is never answered is made against a
listener whose accept queue is full (the kernel drops further SYNs).  Each test runs on both
engines; "green" tests run in a thread with a hub (a GreenSocket comes back), "plain" ones in
a thread without (a plain socket.socket comes back).  The PROXY header is read by our own
server, and, where haproxy is installed, by a real HAProxy with ``accept-proxy``.
"""
import ast
import contextlib
import socket
import threading
import time

import pytest

from support_haproxy import HAPROXY, SKIP_REASON, free_port, running
from support_net import HOST, TIMEOUT, recv_until_eof, serving
from support_greenlet import drop_thread_hub as _drop_thread_hub

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
import cysocketserver.greenlets as greenlets  # noqa: E402
from cysocketserver import _proxybuild  # noqa: E402
from cysocketserver._proxycommon import ANY, V1, V2  # noqa: E402

CLIENT = ("203.0.113.7", 5555)
SERVER = ("192.0.2.1", 443)
CLIENT6 = ("2001:db8::7", 5556)
SERVER6 = ("2001:db8::1", 8443)


def _has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")


@pytest.fixture
def plain(cy_ss):
    """No hub in this thread: connect() gives a plain socket."""
    _drop_thread_hub()
    yield cy_ss


@pytest.fixture
def green(cy_ss):
    """This thread runs a hub (on the engine under test): connect() gives a GreenSocket."""
    _drop_thread_hub()
    try:
        greenlets.get_hub()
        yield cy_ss
    finally:
        _drop_thread_hub()


@pytest.fixture(params=["plain", "green"])
def either(request, cy_ss):
    _drop_thread_hub()
    try:
        if request.param == "green":
            greenlets.get_hub()
        yield request.param
    finally:
        _drop_thread_hub()


@contextlib.contextmanager
def unanswered(family=socket.AF_INET, host=HOST):
    """The address of a listener that never answers a new SYN: its accept queue is full."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    fillers = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(3):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        time.sleep(0.05)   # the handshakes the queue takes are done
        yield address
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def refused_address(family=socket.AF_INET, host=HOST):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))   # bound, never listening: a connect is refused
        return sock.getsockname()


# -- deadlines and errors ------------------------------------------------------------------------

def test_connect_timeout_against_an_unanswered_connect(either):
    with unanswered() as address:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            cysocketserver.connect(address, connect_timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 1.5


def test_timeout_bounds_the_connect_when_connect_timeout_is_not_given(either):
    with unanswered() as address:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            cysocketserver.connect(address, timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 1.5


def test_refused(either):
    with pytest.raises(ConnectionRefusedError):
        cysocketserver.connect(refused_address(), connect_timeout=TIMEOUT)
    with pytest.raises(ConnectionRefusedError):
        cysocketserver.connect(refused_address())


def test_an_unknown_name_is_a_gaierror(either):
    with pytest.raises(socket.gaierror):
        cysocketserver.connect(("name.invalid", 80), connect_timeout=TIMEOUT)


def test_timeout_applies_afterwards(either):
    with socket.create_server((HOST, 0)) as listener:
        address = listener.getsockname()
        with cysocketserver.connect(address, timeout=2.5, connect_timeout=1) as sock:
            assert sock.gettimeout() == 2.5
        with cysocketserver.connect(address, connect_timeout=1) as sock:
            assert sock.gettimeout() is None
        with cysocketserver.connect(address, 0.0) as sock:
            assert sock.gettimeout() == 0.0
        with cysocketserver.connect(address, timeout=0.2) as sock:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                sock.recv(1)   # the server sends nothing
            assert time.monotonic() - start < 1.5


def test_a_name(either):
    with socket.create_server((HOST, 0)) as listener:
        port = listener.getsockname()[1]
        with cysocketserver.connect(("localhost", port), connect_timeout=TIMEOUT) as sock:
            assert sock.getpeername()[1] == port


@needs_ipv6
def test_ipv6(either):
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        address = listener.getsockname()[:2]
        with cysocketserver.connect(address, connect_timeout=TIMEOUT) as sock:
            assert sock.family == socket.AF_INET6
            assert sock.getpeername()[:2] == address
    with unanswered(socket.AF_INET6, "::1") as address:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            cysocketserver.connect(address[:2], connect_timeout=0.3)
        assert time.monotonic() - start < 1.5


def test_source_address(either):
    with socket.create_server((HOST, 0)) as listener:
        with cysocketserver.connect(listener.getsockname(), TIMEOUT, ("127.0.0.7", 0)) as sock:
            conn, peer = listener.accept()
            conn.close()
            assert peer[0] == "127.0.0.7" == sock.getsockname()[0]


def test_the_addresses_of_a_name_are_tried_in_order_within_one_deadline(either, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo
    answers = {}

    def getaddrinfo(host, port, *args):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in answers[host]]
        return real_getaddrinfo(host, port, *args)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with socket.create_server((HOST, 0)) as listener, unanswered() as first, \
            unanswered() as second:
        answers["refused-then-up.test"] = [refused_address(), listener.getsockname()]
        with cysocketserver.connect(("refused-then-up.test", 1), connect_timeout=TIMEOUT) as s:
            assert s.getpeername() == listener.getsockname()
        answers["two-unanswered.test"] = [first, second, listener.getsockname()]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            cysocketserver.connect(("two-unanswered.test", 1), connect_timeout=0.4)
        # One deadline for all: not 0.4 s for each address.
        assert 0.35 <= time.monotonic() - start < 0.75


# -- what comes back, where ------------------------------------------------------------------

def test_a_plain_thread_gets_a_plain_blocking_socket(cy_ss):
    got = []

    def plain_thread():
        with socket.create_server((HOST, 0)) as listener:
            with cysocketserver.connect(listener.getsockname(), connect_timeout=TIMEOUT) as s:
                got.append((type(s), s.getblocking(), greenlets._tls.__dict__.get("hub")))

    thread = threading.Thread(target=plain_thread)
    thread.start()
    thread.join(TIMEOUT)
    assert got == [(socket.socket, True, None)]   # and no hub was made for it


def test_in_a_greenlet_it_is_a_green_socket_and_others_run_while_it_waits(green):
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            cysocketserver.sleep(0.02)

    with socket.create_server((HOST, 0)) as listener:
        with cysocketserver.connect(listener.getsockname(), connect_timeout=TIMEOUT) as sock:
            assert isinstance(sock, greenlets.GreenSocket)
    task = cysocketserver.spawn(ticker)
    try:
        with unanswered() as address:
            with pytest.raises(TimeoutError):
                cysocketserver.spawn(cysocketserver.connect, address,
                                     connect_timeout=0.3).join(timeout=TIMEOUT)
        assert len(ticks) >= 5   # the ticker ran all along
    finally:
        task.kill()


# -- the PROXY header -----------------------------------------------------------------------

class Report(cysocketserver.StreamRequestHandler):
    """Replies with what the server learnt from the PROXY header, and the first line."""

    def handle(self):
        header = self.server.proxy_header(self.request)
        line = self.rfile.readline()
        self.wfile.write(repr((self.client_address, header.version, header.source,
                               header.destination, line)).encode())


def _proxy_server(ss, kind):
    base = ss.GreenletTCPServer if kind == "greenlet" else ss.ThreadingTCPServer
    return type("Server", (base,), {"proxy_protocol": "any", "daemon_threads": True})(
        (HOST, 0), type("Handler", (Report, ss.StreamRequestHandler), {}))


def _talk(address, **proxy):
    with cysocketserver.connect(address, timeout=TIMEOUT, connect_timeout=TIMEOUT,
                                **proxy) as sock:
        sock.sendall(b"hello upstream\n")
        return ast.literal_eval(recv_until_eof(sock).decode())


def _shape(address):
    """An address as the socket module gives it for its family."""
    return address if ":" not in address[0] else (*address, 0, 0)


@pytest.mark.parametrize("addresses", [(CLIENT, SERVER), (CLIENT6, SERVER6)], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("kind", ["threading", "greenlet"])
def test_our_server_reads_the_header(either, cy_ss, kind, version, addresses):
    server = _proxy_server(cy_ss, kind)
    with serving(server):
        got = _talk(server.server_address, proxy_protocol=version, proxy_addresses=addresses)
    client, server_address = map(_shape, addresses)
    assert got == (client, int(version[1]), client, server_address, b"hello upstream\n")
    assert sum(server.proxy_protocol_refused.values()) == 0


def test_the_header_is_one_write_before_any_data(either):
    with socket.create_server((HOST, 0)) as listener:
        with cysocketserver.connect(listener.getsockname(), connect_timeout=TIMEOUT,
                                    proxy_protocol="v1", proxy_addresses=(CLIENT, SERVER)):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                assert conn.recv(4096) == b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n"


@pytest.mark.parametrize("bad, error", [
    (dict(proxy_protocol="v3", proxy_addresses=(CLIENT, SERVER)), ValueError),
    (dict(proxy_protocol=2, proxy_addresses=(CLIENT, SERVER)), ValueError),
    (dict(proxy_protocol="v1"), ValueError),
    (dict(proxy_addresses=(CLIENT, SERVER)), ValueError),
    (dict(proxy_protocol="v2", proxy_addresses=CLIENT), TypeError),
    (dict(proxy_protocol="v2", proxy_addresses=(CLIENT,)), TypeError),
    (dict(proxy_protocol="v2", proxy_addresses=(("example.com", 1), SERVER)), ValueError),
    (dict(proxy_protocol="v1", proxy_addresses=(("203.0.113.7", 70000), SERVER)), ValueError),
    (dict(proxy_protocol="v1", proxy_addresses=(("203.0.113.7", "80"), SERVER)), TypeError),
    (dict(proxy_protocol="v1", proxy_addresses=(CLIENT, "192.0.2.1:443")), TypeError),
    (dict(connect_timeout=0), ValueError),
    (dict(connect_timeout=-1), ValueError),
    (dict(connect_timeout="1"), TypeError),
    (dict(timeout=-1), ValueError),
    (dict(timeout="1"), TypeError),
])
def test_bad_arguments_fail_before_connecting(either, bad, error):
    with socket.create_server((HOST, 0)) as listener:
        with pytest.raises(error):
            cysocketserver.connect(listener.getsockname(), **bad)
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError):
            listener.accept()   # nothing connected


def test_the_builder_agrees_with_both_parsers(cy_ss):
    from cysocketserver import _engine

    # Both engines' parsers: the one source run as Python, and compiled where it is built.
    parsers = [_engine.load("python").proxyproto.parse]
    if _engine.available("compiled"):
        parsers.append(_engine.load("compiled").proxyproto.parse)
    cases = [(CLIENT, SERVER), (CLIENT6, SERVER6), (("0.0.0.0", 0), ("255.255.255.255", 65535)),
             (("::ffff:10.0.0.1", 1), ("::", 2)), (("127.0.0.1", 3), ("::1", 4))]
    for version in (V1, V2):
        for source, destination in cases:
            header = _proxybuild.build(version, source, destination)
            for parse in parsers:
                got = parse(header, ANY)
                assert got.version == version and got.command == "PROXY"
                if ":" in source[0] + destination[0]:
                    # Mixed families are sent as IPv6 (IPv4-mapped).
                    assert got.family == socket.AF_INET6
                    mapped = [a[0] if ":" in a[0] else "::ffff:" + a[0]
                              for a in (source, destination)]
                    assert [got.source[1], got.destination[1]] == [source[1], destination[1]]
                    assert [socket.inet_pton(socket.AF_INET6, a) for a in mapped] == \
                        [socket.inet_pton(socket.AF_INET6, got.source[0]),
                         socket.inet_pton(socket.AF_INET6, got.destination[0])]
                else:
                    assert (got.source, got.destination) == (source, destination)
    # The specification's own example line.
    assert _proxybuild.build(V1, ("192.168.0.1", 56324), ("192.168.0.11", 443)) == \
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"


# -- a real HAProxy reads it ---------------------------------------------------------------------

@pytest.mark.skipif(HAPROXY is None, reason=SKIP_REASON)
@pytest.mark.parametrize("addresses", [(CLIENT, SERVER), (CLIENT6, SERVER6)], ids=["ipv4", "ipv6"])
def test_haproxy_accepts_the_header(cy_ss, addresses):
    """connect() -> HAProxy (``accept-proxy``) -> ``send-proxy-v2`` -> our server: the client
    address our server sees can only have come through HAProxy from the header we sent."""
    server = _proxy_server(cy_ss, "threading")
    port = free_port()
    _drop_thread_hub()
    with serving(server), running(f"""
frontend front
    bind {HOST}:{port} accept-proxy
    default_backend back
backend back
    server app {HOST}:{server.server_address[1]} send-proxy-v2
""", port):
        for version in ("v1", "v2"):
            got = _talk((HOST, port), proxy_protocol=version, proxy_addresses=addresses)
            client, server_address = map(_shape, addresses)
            assert got == (client, 2, client, server_address, b"hello upstream\n")
    assert sum(server.proxy_protocol_refused.values()) == 0
