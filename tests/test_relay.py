"""cysocketserver.relay(): a relay server's handler (greenlet and threading servers, both engines)
between a client and an upstream, on loopback."""
import hashlib
import queue
import random
import socket
import struct
import threading
import time

import pytest

from support_greenlet import drop_thread_hub as _drop_thread_hub

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
from cysocketserver import _engine, relaying  # noqa: E402

TIMEOUT = 60


@pytest.fixture(params=["greenlet", "threading"])
def kind(request, cy_ss):
    _drop_thread_hub()
    yield request.param
    _drop_thread_hub()


@pytest.fixture
def splice(request):
    """relaying.SPLICE for the test (restored after)."""
    saved = relaying.SPLICE
    yield lambda mode: setattr(relaying, "SPLICE", mode)
    relaying.SPLICE = saved


class Upstream:
    """A listener whose every connection runs ``script(conn)`` in a thread of its own."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.address = self.sock.getsockname()
        self.errors = []
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            with conn:
                self.script(conn)
        except BaseException as exc:  # reported by check()
            self.errors.append(exc)

    def check(self):
        for t in list(self.threads):
            t.join(TIMEOUT)
        assert not self.errors, self.errors

    def close(self):
        self.sock.close()


class RelayServer:
    """A greenlet or threading server whose handler relays each client to ``upstream``."""

    def __init__(self, kind, upstream, idle_timeout=None):
        self.results = queue.Queue()
        results = self.results
        address = upstream.address
        green = kind == "greenlet"

        class Handler(cysocketserver.BaseRequestHandler):
            def handle(self):
                if green:
                    up = cysocketserver.connect(address)
                else:
                    up = socket.create_connection(address)
                try:
                    start = time.monotonic()
                    counts = cysocketserver.relay(self.request, up, idle_timeout=idle_timeout)
                    results.put((counts, time.monotonic() - start, up.gettimeout(),
                                 self.request.gettimeout()))
                finally:
                    up.close()

        cls = cysocketserver.GreenletTCPServer if green else cysocketserver.ThreadingTCPServer
        self.server = cls(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def result(self, timeout=TIMEOUT):
        counts, elapsed, up_timeout, request_timeout = self.results.get(timeout=timeout)
        # The relay leaves the sockets' timeouts as it found them.
        assert up_timeout is None and request_timeout is None
        return counts, elapsed

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def relay_pair(kind):
    """relay_pair(script, idle_timeout=None) -> (upstream, relay server), closed after."""
    made = []

    def make(script, idle_timeout=None):
        upstream = Upstream(script)
        server = RelayServer(kind, upstream, idle_timeout)
        made.append((upstream, server))
        return upstream, server

    yield make
    for upstream, server in made:
        server.close()
        upstream.close()


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def reset(sock):
    """Close with an RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- half-close ---------------------------------------------------------------------------------

def test_client_half_close_then_reply(relay_pair):
    def script(conn):
        assert recv_all(conn) == b"question"
        time.sleep(0.05)  # the answer comes well after the client's end of stream
        conn.sendall(b"answer" * 1000)

    upstream, server = relay_pair(script)
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        client.sendall(b"question")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"answer" * 1000
    assert server.result()[0] == (8, 6000)
    upstream.check()


def test_upstream_half_close_first(relay_pair):
    def script(conn):
        conn.sendall(b"greeting")
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(conn) == b"late words" * 500

    upstream, server = relay_pair(script)
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        assert recv_all(client) == b"greeting"
        time.sleep(0.05)
        client.sendall(b"late words" * 500)
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b""
    assert server.result()[0] == (5000, 8)
    upstream.check()


# -- resets -------------------------------------------------------------------------------------

def test_client_reset_ends_both(relay_pair, capfd):
    holding = threading.Event()

    def script(conn):
        assert conn.recv(100) == b"hello"
        holding.set()
        conn.settimeout(TIMEOUT)
        assert recv_all(conn) == b""  # the relay's end: an end of stream (the handler closes)

    upstream, server = relay_pair(script)
    client = socket.create_connection(server.address, timeout=TIMEOUT)
    client.sendall(b"hello")
    assert holding.wait(TIMEOUT)
    start = time.monotonic()
    reset(client)
    counts, _ = server.result()
    assert time.monotonic() - start < 1.0
    assert counts == (5, 0)
    upstream.check()
    assert "Traceback" not in capfd.readouterr().err


def test_upstream_reset_ends_both(relay_pair, capfd):
    def script(conn):
        assert conn.recv(100) == b"hello"
        conn.sendall(b"hi")
        time.sleep(0.1)
        # Closed on return (Upstream._run): with an RST.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    upstream, server = relay_pair(script)
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        client.sendall(b"hello")
        assert client.recv(100) == b"hi"
        start = time.monotonic()
        counts, _ = server.result()
        assert time.monotonic() - start < 1.0
        assert counts == (5, 2)
        # The handler closed the client's socket: the client sees the end.
        assert recv_all(client) == b""
    upstream.check()
    assert "Traceback" not in capfd.readouterr().err


# -- idle timeout -------------------------------------------------------------------------------

def test_idle_timeout_ends_a_silent_pair(relay_pair):
    def script(conn):
        conn.settimeout(TIMEOUT)
        assert recv_all(conn) == b""

    upstream, server = relay_pair(script, idle_timeout=0.3)
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        counts, elapsed = server.result()
        assert counts == (0, 0)
        assert 0.28 <= elapsed < 2.0
        assert recv_all(client) == b""
    upstream.check()


def test_idle_timeout_spares_a_busy_pair(relay_pair):
    def script(conn):
        while True:
            data = conn.recv(100)
            if not data:
                return
            conn.sendall(data)

    upstream, server = relay_pair(script, idle_timeout=0.4)
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        for _ in range(12):  # 1.2 s, three times the idle timeout
            client.sendall(b"tick")
            assert client.recv(100) == b"tick"
            time.sleep(0.1)
        assert server.results.empty()
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b""
    assert server.result()[0] == (48, 48)
    upstream.check()


@pytest.mark.parametrize("bad, error", [("1", TypeError), (True, TypeError), (0, ValueError),
                                        (-1.0, ValueError), (float("nan"), ValueError)])
def test_idle_timeout_checked(cy_ss, bad, error):
    a, b = socket.socketpair()
    with a, b, pytest.raises(error, match="idle_timeout"):
        cysocketserver.relay(a, b, idle_timeout=bad)


def test_splice_setting_checked(cy_ss, splice):
    splice("sometimes")
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError, match="SPLICE"):
        cysocketserver.relay(a, b)


# -- bulk ---------------------------------------------------------------------------------------

BULK = 64 << 20
CHUNK = 1 << 20


def _stream(seed):
    """BULK pseudo-random bytes, chunk by chunk, and their digest."""
    rng = random.Random(seed)
    chunks = [rng.randbytes(CHUNK) for _ in range(BULK // CHUNK)]
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return chunks, digest.hexdigest()


_STREAMS = {}


def stream(seed):
    if seed not in _STREAMS:
        _STREAMS[seed] = _stream(seed)
    return _STREAMS[seed]


def _receive_digest(sock, out):
    digest = hashlib.sha256()
    total = 0
    while True:
        data = sock.recv(1 << 18)
        if not data:
            break
        digest.update(data)
        total += len(data)
    out.append((total, digest.hexdigest()))


def _send(sock, chunks):
    for chunk in chunks:
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("mode", ["never", "always", "auto"])
def test_full_duplex_64_mib_each_way(relay_pair, splice, engine, kind, mode):
    if engine == "python" and mode != "never":
        pytest.skip("the pure engine always copies")
    if kind == "threading" and mode == "auto":
        pytest.skip("auto is the greenlet case's")
    splice(mode)
    up_chunks, up_digest = stream(2)
    client_chunks, client_digest = stream(1)
    at_upstream = []

    def script(conn):
        sender = threading.Thread(target=_send, args=(conn, up_chunks))
        sender.start()
        _receive_digest(conn, at_upstream)
        sender.join()

    upstream, server = relay_pair(script)
    at_client = []
    with socket.create_connection(server.address, timeout=TIMEOUT) as client:
        sender = threading.Thread(target=_send, args=(client, client_chunks))
        sender.start()
        _receive_digest(client, at_client)
        sender.join()
    upstream.check()
    assert at_client == [(BULK, up_digest)]
    assert at_upstream == [(BULK, client_digest)]
    assert server.result()[0] == (BULK, BULK)


# -- many at once -------------------------------------------------------------------------------

def test_fifty_pairs_at_once(relay_pair, kind):
    def script(conn):
        while True:
            data = conn.recv(65536)
            if not data:
                conn.shutdown(socket.SHUT_WR)
                return
            conn.sendall(data)

    upstream, server = relay_pair(script)
    size = 256 << 10
    payloads = [random.Random(i).randbytes(size) for i in range(50)]
    echoed = [None] * 50
    clients = [socket.create_connection(server.address, timeout=TIMEOUT) for _ in range(50)]

    def talk(i):
        sender = threading.Thread(target=_send, args=(clients[i], [payloads[i]]))
        sender.start()
        echoed[i] = recv_all(clients[i])
        sender.join()

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    for c in clients:
        c.close()
    assert echoed == payloads
    results = sorted(server.result()[0] for _ in range(50))
    assert results == [(size, size)] * 50
    upstream.check()


# -- the relay itself ---------------------------------------------------------------------------

def test_leaves_blocking_mode_and_timeouts(cy_ss, splice):
    splice("always")
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    a2.settimeout(None)
    b1.settimeout(7.5)
    with a1, a2, b1, b2:
        def peer():
            a1.sendall(b"x" * 300000)
            a1.shutdown(socket.SHUT_WR)
            b2.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=peer)
        t.start()
        reader = threading.Thread(target=lambda: recv_all(b2))
        reader.start()
        assert cysocketserver.relay(a2, b1) == (300000, 0)
        t.join()
        reader.join()
        assert a2.getblocking() and a2.gettimeout() is None
        assert b1.gettimeout() == 7.5


def test_not_the_same_socket(cy_ss):
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError):
        cysocketserver.relay(a, a)


def test_front_exports_relay_without_greenlet():
    import subprocess
    import sys

    code = ("import sys, cysocketserver; f = cysocketserver.relay; "
            "assert 'greenlet' not in sys.modules, 'greenlet imported'; "
            "assert 'relay' in cysocketserver.__all__")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)


def test_engines_have_a_relay():
    for name in ("compiled", "python"):
        if _engine.available(name):
            part = _engine.load(name).relay
            assert callable(part.relay_in_thread) and callable(part.relay_on_hub)
