"""The serving core on both engines: the connection registry, the concurrency models (the
bounded thread pool above all), mix-in combinations, and draining greenlet servers."""
import socket
import threading
import time

import pytest

from support_net import HOST, TIMEOUT, connect, recv_until_eof, serving, wait_for

MODEL_SERVERS = ["ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer"]


class Backlog:
    request_queue_size = 64


def _holding_handler(ss, started, cooperative=False):
    """Echoes lines until the client closes; records each handler that starts."""

    class H(ss.StreamRequestHandler):
        def handle(self):
            started.append(threading.get_native_id())
            for line in self.rfile:
                self.wfile.write(line)

    return H


def _server(ss, name, handler, **attrs):
    cls = type("S", (Backlog, getattr(ss, name)), dict(attrs))
    return cls((HOST, 0), handler)


def _round_trip(sock, payload=b"ping\n"):
    sock.sendall(payload)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        got += chunk
    return got


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_registry_counts_live_connections(cy_ss, name):
    started = []
    server = _server(cy_ss, name, _holding_handler(cy_ss, started))
    registry = server._connection_registry
    with serving(server):
        clients = [connect(server.server_address) for _ in range(5)]
        try:
            for c in clients:
                assert _round_trip(c) == b"ping\n"
            assert len(registry) == 5
            peers = sorted(entry.client_address for entry in registry)
            assert peers == sorted(c.getsockname() for c in clients)
            assert all(entry.holder is not None for entry in registry)
            for c in clients[:3]:
                c.close()
            assert wait_for(lambda: len(registry) == 2)
        finally:
            for c in clients:
                c.close()
        assert wait_for(lambda: len(registry) == 0)


def test_registry_forgets_refused_and_failed_requests(cy_ss):
    class S(cy_ss.TCPServer):
        def verify_request(self, request, client_address):
            return len(seen) % 2 == 0

    seen = []

    class H(cy_ss.BaseRequestHandler):
        def handle(self):
            raise RuntimeError("handler failed on purpose")

    server = S((HOST, 0), H)
    server.handle_error = lambda request, address: seen.append(address)
    with serving(server):
        for _ in range(4):
            with connect(server.server_address) as c:
                recv_until_eof(c)
            seen.append("client")
        assert wait_for(lambda: len(server._connection_registry) == 0)


# --------------------------------------------------------------------------- the thread pool


def test_pool_reuses_threads(cy_ss):
    started = []
    server = _server(cy_ss, "ThreadPoolTCPServer", _holding_handler(cy_ss, started), max_threads=4)
    with serving(server):
        for _ in range(6):
            with connect(server.server_address) as c:
                assert _round_trip(c) == b"ping\n"
            assert wait_for(lambda: len(server._connection_registry) == 0)
    # One connection at a time: the same pooled thread served them all.
    assert len(set(started)) == 1, started


def test_pool_stops_accepting_when_full_and_resumes(cy_ss):
    started = []
    server = _server(cy_ss, "ThreadPoolTCPServer", _holding_handler(cy_ss, started), max_threads=2)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(4)]
        try:
            for c in clients[:2]:
                assert _round_trip(c) == b"ping\n"
            # The other two wait in the kernel's backlog, not inside the server.
            for c in clients[2:]:
                c.sendall(b"queued\n")
            time.sleep(0.3)
            assert len(started) == 2
            assert len(server._connection_registry) == 2
            # While full the loop does not spin on the ready listener.
            cpu = time.process_time()
            time.sleep(0.5)
            assert time.process_time() - cpu < 0.25
            clients[0].close()
            clients[0] = None
            c = clients[2]
            c.settimeout(TIMEOUT)
            assert c.recv(100) == b"queued\n"
            assert len(started) == 3
        finally:
            for c in clients:
                if c is not None:
                    c.close()


def test_pool_full_shutdown_is_immediate(cy_ss):
    release = threading.Event()

    class H(cy_ss.BaseRequestHandler):
        def handle(self):
            release.wait(TIMEOUT)

    server = _server(cy_ss, "ThreadPoolTCPServer", H, max_threads=1)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        busy = connect(server.server_address)
        queued = connect(server.server_address)
        assert wait_for(lambda: len(server._connection_registry) == 1)
        began = time.monotonic()
        server.shutdown()
        assert time.monotonic() - began < 2.0
    finally:
        release.set()
        thread.join(TIMEOUT)
        server.server_close()
        busy.close()
        queued.close()


@pytest.mark.parametrize("value,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                         ("8", TypeError)])
def test_pool_rejects_bad_max_threads(cy_ss, value, error):
    class S(cy_ss.ThreadPoolTCPServer):
        max_threads = value

    with S((HOST, 0), cy_ss.BaseRequestHandler) as server:
        with pytest.raises(error, match="max_threads"):
            server.serve_forever()


def test_pool_udp(cy_ss):
    threads = []

    class H(cy_ss.DatagramRequestHandler):
        def handle(self):
            threads.append(threading.get_native_id())
            self.wfile.write(self.rfile.read())

    server = cy_ss.ThreadPoolUDPServer((HOST, 0), H)
    with serving(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(TIMEOUT)
        for i in range(5):
            c.sendto(b"d%d" % i, server.server_address)
            assert c.recvfrom(100)[0] == b"d%d" % i
    assert 1 <= len(set(threads)) <= server.max_threads


# --------------------------------------------------------------------------- composition


@pytest.mark.parametrize("mixins", [
    ("GreenletMixIn", "ThreadingMixIn"),
    ("ThreadingMixIn", "GreenletMixIn"),
    ("GreenletMixIn", "ForkingMixIn"),
    ("ForkingMixIn", "GreenletMixIn"),
    ("ThreadPoolMixIn", "ForkingMixIn"),
    ("GreenletMixIn", "ThreadPoolMixIn"),
    ("ThreadingMixIn", "ForkingMixIn"),
])
def test_two_concurrency_mixins_are_refused(cy_ss, mixins):
    bases = tuple(getattr(cy_ss, name) for name in mixins) + (cy_ss.TCPServer,)
    with pytest.raises(TypeError, match="concurrency mix-ins"):
        type("Both", bases, {})


def test_overriding_service_actions_keeps_the_batch(cy_ss):
    from cysocketserver.core import plan as serve_plan

    class S(cy_ss.TCPServer):
        def service_actions(self):
            pass

    with S((HOST, 0), cy_ss.BaseRequestHandler) as server:
        assert serve_plan.make_plan(server, server._model).batch == serve_plan.BATCH


# --------------------------------------------------------------------------- draining


def test_draining_greenlet_server_refuses_new_clients(cy_ss):
    release = []

    class H(cy_ss.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            while not release:
                cy_ss.sleep(0.01)
            self.wfile.write(b"done\n")

    server = _server(cy_ss, "GreenletTCPServer", H)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        busy = connect(server.server_address)
        busy.sendall(b"go\n")
        assert wait_for(lambda: len(server._connection_registry) == 1)
        server.shutdown()  # returns once it stopped accepting; the handler still runs
        # Refused: reset (at once, or on the first read) or closed; never left hanging.
        try:
            with connect(server.server_address, timeout=3.0) as late:
                assert late.recv(10) == b""
        except ConnectionResetError:
            pass
        release.append(True)
        busy.settimeout(TIMEOUT)
        assert busy.recv(10) == b"done\n"
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    finally:
        release.append(True)
        thread.join(TIMEOUT)
        server.server_close()
        busy.close()
