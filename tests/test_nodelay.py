"""TCP_NODELAY on accepted connections (``TCPServer.tcp_nodelay``), and prompt writes.

cysocketserver sets TCP_NODELAY on every TCP connection it accepts, whichever path accepts it
(the compiled accept batch, ``get_request()``, the greenlet servers); ``tcp_nodelay = False``
gives the stdlib's behaviour.  The stdlib runs are the reference for what does not change:
whatever a handler writes reaches the client while the handler is still busy.
"""
import socket
import threading

import pytest

from support_net import HAVE_FORK, HOST, TIMEOUT, connect, serving

fork_ok = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")

SERVER_NAMES = ["TCPServer", "ThreadingTCPServer"]
if HAVE_FORK:
    SERVER_NAMES.append(pytest.param("ForkingTCPServer", marks=fork_ok))


def _have_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def report_handler(ss, **attributes):
    """A handler that answers with whether its connection has TCP_NODELAY ("1" or "0")."""

    class Report(ss.StreamRequestHandler):
        def handle(self):
            value = self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            self.wfile.write(b"1\n" if value else b"0\n")

    for name, value in attributes.items():
        setattr(Report, name, value)
    return Report


def ask(address, family=socket.AF_INET):
    with connect(address, family) as sock, sock.makefile("rb") as rfile:
        return rfile.readline()


def make_server(base, handler, family=socket.AF_INET, host=HOST, **attributes):
    class Server(base):
        allow_reuse_address = True
        daemon_threads = True
        address_family = family

    for name, value in attributes.items():
        setattr(Server, name, value)
    return Server((host, 0), handler)


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_serve_forever_sets_nodelay_on_accepted_connections(ss, is_stdlib, name):
    with serving(make_server(getattr(ss, name), report_handler(ss))) as server:
        answers = {ask(server.server_address) for _ in range(3)}
    # The stdlib leaves the kernel's default (Nagle on); cysocketserver turns it off.
    assert answers == ({b"0\n"} if is_stdlib else {b"1\n"})


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_handle_request_sets_nodelay(ss, is_stdlib, name):
    server = make_server(getattr(ss, name), report_handler(ss), timeout=TIMEOUT)
    with server:
        answers = []
        client = threading.Thread(target=lambda: answers.append(ask(server.server_address)))
        client.start()
        server.handle_request()
        client.join(TIMEOUT)
    assert answers == ([b"0\n"] if is_stdlib else [b"1\n"])


def test_get_request_override_that_calls_super_keeps_nodelay(ss, is_stdlib):
    seen = []

    class Server(ss.ThreadingTCPServer):
        daemon_threads = True

        def get_request(self):
            request, client_address = super().get_request()
            seen.append(client_address)
            return request, client_address

    with serving(Server((HOST, 0), report_handler(ss))) as server:
        answer = ask(server.server_address)
    assert seen
    assert answer == (b"0\n" if is_stdlib else b"1\n")


def test_overridden_service_actions_keeps_nodelay(cy_ss):
    # One accept per wake-up then (the hook runs between two), still without get_request().
    class Server(cy_ss.ThreadingTCPServer):
        daemon_threads = True

        def service_actions(self):
            pass

    with serving(Server((HOST, 0), report_handler(cy_ss))) as server:
        assert ask(server.server_address) == b"1\n"


@pytest.mark.parametrize("off", [False, None])
@pytest.mark.parametrize("name", ["TCPServer", "ThreadingTCPServer"])
def test_tcp_nodelay_off_gives_the_stdlib_behaviour(cy_ss, name, off):
    with serving(make_server(getattr(cy_ss, name), report_handler(cy_ss),
                             tcp_nodelay=off)) as server:
        assert ask(server.server_address) == b"0\n"


def test_tcp_nodelay_read_per_server_instance(cy_ss):
    server = make_server(cy_ss.ThreadingTCPServer, report_handler(cy_ss))
    server.tcp_nodelay = False
    with serving(server):
        assert ask(server.server_address) == b"0\n"


@pytest.mark.parametrize("tcp_nodelay", [True, False])
def test_disable_nagle_algorithm_keeps_its_effect(ss, tcp_nodelay):
    handler = report_handler(ss, disable_nagle_algorithm=True)
    server = make_server(ss.ThreadingTCPServer, handler, tcp_nodelay=tcp_nodelay)
    with serving(server):
        assert ask(server.server_address) == b"1\n"


@pytest.mark.skipif(not _have_ipv6(), reason="needs IPv6 on ::1")
def test_ipv6_connections_get_nodelay(ss, is_stdlib):
    server = make_server(ss.ThreadingTCPServer, report_handler(ss), family=socket.AF_INET6,
                         host="::1")
    with serving(server):
        answer = ask(server.server_address[:2], socket.AF_INET6)
    assert answer == (b"0\n" if is_stdlib else b"1\n")


@pytest.mark.parametrize("tcp_nodelay, expected", [(True, b"1\n"), (False, b"0\n")])
def test_greenlet_server_follows_tcp_nodelay(cy_ss, tcp_nodelay, expected):
    pytest.importorskip("greenlet")
    server = make_server(cy_ss.GreenletTCPServer, report_handler(cy_ss), tcp_nodelay=tcp_nodelay)
    with serving(server):
        assert [ask(server.server_address) for _ in range(3)] == [expected] * 3


def _server_classes(ss, is_stdlib):
    names = ["TCPServer", "ThreadingTCPServer"]
    if not is_stdlib:
        names.append("GreenletTCPServer")
    return [getattr(ss, name) for name in names]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["TCPServer", "ThreadingTCPServer", "Greenlet"])
def test_writes_reach_the_client_while_the_handler_computes(ss, is_stdlib, index):
    """Two small writes (as headers then body), then a long computation: the client has both
    before the computation ends -- nothing waits in a buffer for the handler to read or return."""
    classes = _server_classes(ss, is_stdlib)
    if index >= len(classes):
        pytest.skip("the stdlib has no greenlet servers")
    received = threading.Event()
    finished = threading.Event()
    outcome = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"head\n")
            self.wfile.write(b"body\n")
            # The computation: it ends when the client has both writes, or after TIMEOUT.
            outcome.append(received.wait(TIMEOUT))
            finished.set()

    with serving(make_server(classes[index], Handler)) as server:
        with connect(server.server_address) as sock:
            data = b""
            while len(data) < 10:
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
            received.set()
            # The handler may run on a daemon thread that server_close() does not wait for.
            assert finished.wait(TIMEOUT)
    assert data == b"head\nbody\n"
    assert outcome == [True], "the writes arrived only once the handler had finished"
