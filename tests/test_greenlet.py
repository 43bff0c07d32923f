"""Greenlet servers: every request's handler in a greenlet on the hub of the serving thread.

Each test runs on both engines in this process (the compiled hub and streams, and their
pure-Python twins), by pointing the greenlet layer at one engine's Hub and the handlers at
its rfile/wfile; the subprocess tests take the engine from CYSOCKETSERVER_NO_EXTENSIONS.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest

from support_net import (
    HAVE_UNIX,
    HOST,
    TIMEOUT,
    bounded_shutdown,
    connect,
    fd_count,
    join_or_fail,
    recv_until_eof,
    request_reply,
    serving,
    start_thread,
    subprocess_env,
    wait_for,
)
from support_greenlet import drop_thread_hub as _drop_thread_hub

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
import cysocketserver.greenlets as greenlets  # noqa: E402
import cysocketserver.handlers as handlers  # noqa: E402
from cysocketserver.models.greenlet import greenlet_state  # noqa: E402

SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_greenlet.py")
needs_unix = pytest.mark.skipif(not HAVE_UNIX, reason="needs AF_UNIX")


@pytest.fixture
def gl(cy_ss):
    """cysocketserver, with the greenlet servers running on the engine under test."""
    _drop_thread_hub()
    try:
        yield cy_ss
    finally:
        _drop_thread_hub()


def run_subprocess(args, timeout=60, **env):
    try:
        proc = subprocess.run([sys.executable, SUPPORT, *args], env=subprocess_env(**env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} hung for {timeout}s:\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-20000:]}"
    return proc.stdout


ENGINE_ENV = {
    "compiled": {"CYSOCKETSERVER_NO_EXTENSIONS": None},
    "python": {"CYSOCKETSERVER_NO_EXTENSIONS": "1"},
}


@pytest.fixture(params=["compiled", "python"])
def engine_env(request):
    if request.param == "compiled" and cysocketserver.IMPLEMENTATION != "compiled":
        pytest.skip("the compiled engine is not in use")
    return request.param, ENGINE_ENV[request.param]


class Backlog:
    """Room in the listen queue for every test client: a full queue drops SYNs (1 s retries)."""

    request_queue_size = 256


class LineEcho(cysocketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


# --------------------------------------------------------------------------- API


def test_public_names():
    names = ["GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "connect", "sleep",
             "to_thread"]
    if HAVE_UNIX:
        names += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]
    for name in names:
        assert name in cysocketserver.__all__
        assert getattr(cysocketserver, name) is getattr(greenlets, name)
    assert issubclass(cysocketserver.GreenletTCPServer, cysocketserver.TCPServer)
    assert cysocketserver.GreenletTCPServer.block_on_close is True


def test_public_names_say_what_they_do():
    for name in greenlets.__all__:
        assert getattr(greenlets, name).__doc__, name
    # A handler that blocks the thread holds every client: the help says so, and what to use.
    for doc in (greenlets.GreenletMixIn.__doc__, greenlets.GreenletTCPServer.__doc__):
        for word in ("time.sleep()", "blocking", "sleep()", "connect()", "to_thread()"):
            assert word in doc, word

def test_missing_greenlet_says_how_to_get_it():
    code = (
        "import sys\n"
        "sys.modules['greenlet'] = None\n"
        "import cysocketserver\n"
        "assert cysocketserver.TCPServer\n"
        "try:\n"
        "    cysocketserver.GreenletTCPServer\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR', exc)\n"
        "try:\n"
        "    from cysocketserver import GreenletMixIn\n"
        "except ImportError as exc:\n"
        "    print('FROM-IMPORT-ERROR', exc)\n"
        "try:\n"
        "    cysocketserver.NoSuchThing\n"
        "except AttributeError:\n"
        "    print('ATTRIBUTE-ERROR')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORT-ERROR" in proc.stdout and "pip install 'greenlet>=3'" in proc.stdout
    assert "FROM-IMPORT-ERROR" in proc.stdout
    assert "ATTRIBUTE-ERROR" in proc.stdout


# --------------------------------------------------------------------------- serving


def test_echo_many_clients_on_one_thread(gl):
    idents = set()

    class H(LineEcho):
        def handle(self):
            idents.add(threading.get_ident())
            super().handle()

    server = type("S", (Backlog, gl.GreenletTCPServer), {})((HOST, 0), H)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(60)]
        try:
            for rnd in range(3):
                for i, c in enumerate(clients):
                    c.sendall(b"round %d client %d\n" % (rnd, i))
                for i, c in enumerate(clients):
                    assert c.makefile("rb").readline() == b"round %d client %d\n" % (rnd, i)
        finally:
            for c in clients:
                c.close()
    assert len(idents) == 1


def test_request_is_cooperative_socket(gl):
    seen = {}

    class H(gl.BaseRequestHandler):
        def handle(self):
            sock = self.request
            seen["type"] = type(sock)
            seen["timeout"] = sock.gettimeout()
            seen["blocking"] = sock.getblocking()
            data = b""
            while not data.endswith(b"\n"):
                data += sock.recv(3)
            buf = bytearray(10)
            n = sock.recv_into(buf, 4)
            sock.send(data)
            sock.sendall(bytes(buf[:n]) * 1000)
            seen["peer"] = sock.getpeername()
            seen["name"] = sock.getsockname()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seen["fileno"] = sock.fileno() >= 0
            sock.shutdown(socket.SHUT_WR)

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        with connect(server.server_address) as c:
            c.sendall(b"hello\nabcd")
            reply = recv_until_eof(c)
    assert reply == b"hello\n" + b"abcd" * 1000
    assert issubclass(seen["type"], socket.socket)
    assert seen["timeout"] is None and seen["blocking"] is True
    assert seen["peer"][0] == HOST
    assert seen["name"] == server.server_address
    assert seen["fileno"]


GREENLET_ORDER = [
    "get_request", "verify_request", "process_request", "process_request_greenlet",
    "finish_request", "setup", "handle", "finish", "shutdown_request", "close_request",
]


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_hook_call_order(gl, udp):
    log = []
    base = gl.GreenletUDPServer if udp else gl.GreenletTCPServer

    class Server(base):
        pass

    for name in GREENLET_ORDER[:5] + GREENLET_ORDER[-2:]:
        def hook(self, *args, _name=name):
            log.append(_name)
            return getattr(super(Server, self), _name)(*args)
        setattr(Server, name, hook)

    class Handler(gl.DatagramRequestHandler if udp else gl.StreamRequestHandler):
        def setup(self):
            log.append("setup")
            super().setup()

        def handle(self):
            log.append("handle")
            self.wfile.write(self.rfile.readline())

        def finish(self):
            log.append("finish")
            super().finish()

    with Server((HOST, 0), Handler) as server:
        if udp:
            with serving(server, close=False):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.settimeout(TIMEOUT)
                    c.sendto(b"hook\n", server.server_address)
                    reply = c.recvfrom(100)[0]
                assert wait_for(lambda: "close_request" in log)
        else:
            with serving(server, close=False):
                reply = request_reply(server.server_address, b"hook\n")
                assert wait_for(lambda: "close_request" in log)
    assert reply == b"hook\n"
    assert log == GREENLET_ORDER


def test_handle_request_serves_one_request(gl):
    class H(gl.StreamRequestHandler):
        def handle(self):
            gl.sleep(0.05)
            self.wfile.write(b"served " + self.rfile.readline())

    with gl.GreenletTCPServer((HOST, 0), H) as server:
        with connect(server.server_address) as c:
            c.sendall(b"x\n")
            server.handle_request()  # returns once the handler has finished
            assert recv_until_eof(c) == b"served x\n"


def test_handle_request_timeout(gl):
    log = []

    class S(gl.GreenletTCPServer):
        timeout = 0.2

        def handle_timeout(self):
            log.append(time.monotonic())

    with S((HOST, 0), gl.BaseRequestHandler) as server:
        start = time.monotonic()
        server.handle_request()
        assert len(log) == 1
        assert 0.15 <= log[0] - start < 2.0


def test_verify_request_false(gl):
    log = []

    class S(gl.GreenletTCPServer):
        def verify_request(self, request, client_address):
            log.append(("verify", client_address))
            return False

        def shutdown_request(self, request):
            log.append("shutdown_request")
            super().shutdown_request(request)

    class H(gl.BaseRequestHandler):
        def handle(self):
            log.append("handle")

    server = S((HOST, 0), H)
    with serving(server):
        with connect(server.server_address) as c:
            assert recv_until_eof(c) == b""
            client_address = c.getsockname()
    assert log == [("verify", client_address), "shutdown_request"]


def test_handler_exception_goes_to_handle_error_and_hub_survives(gl):
    errors = []

    class S(gl.GreenletTCPServer):
        def handle_error(self, request, client_address):
            errors.append((sys.exc_info()[0], client_address))

    class H(gl.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line == b"boom\n":
                raise ValueError("boom")
            if line == b"exit\n":
                raise SystemExit  # ends this greenlet only, as it would end a thread
            self.wfile.write(line)

    server = S((HOST, 0), H)
    with serving(server):
        assert request_reply(server.server_address, b"boom\n") == b""
        assert request_reply(server.server_address, b"exit\n") == b""
        assert request_reply(server.server_address, b"fine\n") == b"fine\n"
    assert [e[0] for e in errors] == [ValueError]
    assert errors[0][1][0] == HOST


def test_default_handle_error_prints_traceback(gl, capfd):
    class H(gl.BaseRequestHandler):
        def handle(self):
            raise RuntimeError("greenlet-traceback-marker")

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        request_reply(server.server_address, b"")
    err = capfd.readouterr().err
    assert "Exception occurred during processing of request from" in err
    assert "greenlet-traceback-marker" in err


def test_block_on_close_waits_for_handlers(gl):
    finished = threading.Event()

    class H(gl.BaseRequestHandler):
        def handle(self):
            gl.sleep(0.4)
            finished.set()

    server = gl.GreenletTCPServer((HOST, 0), H)
    serve = start_thread(server.serve_forever, 0.02)
    with connect(server.server_address):
        assert wait_for(lambda: greenlet_state(server).handlers)
        start = time.monotonic()
        bounded_shutdown(server)
        assert time.monotonic() - start < 0.3, "shutdown() waited for the handler"
        server.server_close()
        assert finished.is_set(), "server_close() returned before the handler finished"
    join_or_fail(serve)


def test_block_on_close_false_ends_handlers_in_hub_thread(gl):
    ended = []

    class S(gl.GreenletTCPServer):
        block_on_close = False

    waiting = threading.Event()

    class H(gl.StreamRequestHandler):
        def handle(self):
            waiting.set()
            try:
                self.rfile.readline()  # the client never sends
            except BaseException as exc:
                ended.append(type(exc).__name__)
                raise

    server = S((HOST, 0), H)
    with connect(server.server_address) as c:
        def serve_then_close():
            server.serve_forever(0.02)
            server.server_close()

        serve = start_thread(serve_then_close)
        assert waiting.wait(TIMEOUT)
        bounded_shutdown(server)
        join_or_fail(serve)
        assert ended == ["GreenletExit"]
        assert recv_until_eof(c) == b""  # the handler's socket was shut down and closed


def test_block_on_close_false_shuts_down_requests_of_unstarted_handlers(gl):
    handled = []
    shut = []

    class S(gl.GreenletTCPServer):
        block_on_close = False

        def process_request(self, request, client_address):
            super().process_request(request, client_address)
            self._BaseServer__shutdown_request = True  # stop before the handler gets a turn

        def shutdown_request(self, request):
            shut.append(request)
            super().shutdown_request(request)

    class H(gl.BaseRequestHandler):
        def handle(self):
            handled.append(1)

    server = S((HOST, 0), H)
    with connect(server.server_address) as c:
        def serve_then_close():
            server.serve_forever(0.02)
            server.server_close()

        join_or_fail(start_thread(serve_then_close))
        assert recv_until_eof(c) == b""
    assert handled == [] and len(shut) == 1
    assert not greenlet_state(server).handlers


def test_shutdown_is_prompt(gl):
    server = gl.GreenletTCPServer((HOST, 0), LineEcho)
    serve = start_thread(server.serve_forever, 30)
    try:
        time.sleep(0.1)
        start = time.monotonic()
        bounded_shutdown(server)
        assert time.monotonic() - start < 1.0
        join_or_fail(serve)
    finally:
        server.server_close()


def test_shutdown_from_a_handler(gl):
    class H(gl.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            self.server.shutdown()  # waits, cooperatively, until the loop has stopped
            self.wfile.write(b"stopped\n")

    server = gl.GreenletTCPServer((HOST, 0), H)
    serve = start_thread(server.serve_forever, 30)
    try:
        assert request_reply(server.server_address, b"stop\n") == b"stopped\n"
        join_or_fail(serve)
    finally:
        server.server_close()


def test_private_shutdown_flag_from_a_handler(gl):
    class H(gl.BaseRequestHandler):
        def handle(self):
            self.server._BaseServer__shutdown_request = True

    server = gl.GreenletTCPServer((HOST, 0), H)
    serve = start_thread(server.serve_forever, 30)
    try:
        request_reply(server.server_address, b"")
        join_or_fail(serve)
    finally:
        server.server_close()


def test_shutdown_under_load(gl):
    class H(gl.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                gl.sleep(0.001)
                self.wfile.write(line)

    server = type("S", (Backlog, gl.GreenletTCPServer), {})((HOST, 0), H)
    serve = start_thread(server.serve_forever, 0.05)
    stop = threading.Event()
    outcomes = []

    def client(n):
        done = 0
        try:
            with connect(server.server_address) as c:
                f = c.makefile("rb")
                while not stop.is_set():
                    c.sendall(b"%d\n" % n)
                    if f.readline() != b"%d\n" % n:
                        break
                    done += 1
        except OSError:
            pass
        outcomes.append(done)

    clients = [start_thread(client, n) for n in range(20)]
    time.sleep(0.4)
    start = time.monotonic()
    bounded_shutdown(server)
    assert time.monotonic() - start < 1.0
    stop.set()
    for t in clients:
        join_or_fail(t)
    join_or_fail(serve)
    server.server_close()
    assert len(outcomes) == 20 and all(outcomes), outcomes
    assert not greenlet_state(server).handlers
    # The listener is closed: new clients are refused.
    with pytest.raises(OSError):
        connect(server.server_address).close()


# --------------------------------------------------------------------------- timeouts


def test_stream_handler_timeout(gl):
    caught = []

    class H(gl.StreamRequestHandler):
        timeout = 0.2

        def handle(self):
            start = time.monotonic()
            try:
                self.rfile.readline()
            except TimeoutError as exc:
                caught.append((str(exc), time.monotonic() - start))

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        with connect(server.server_address) as c:
            assert recv_until_eof(c) == b""  # the handler gave up and closed
    assert len(caught) == 1
    assert caught[0][0] == "timed out"
    assert 0.15 <= caught[0][1] < 2.0


def test_socket_timeouts(gl):
    caught = []

    class H(gl.BaseRequestHandler):
        def handle(self):
            sock = self.request
            sock.settimeout(0.1)
            assert sock.gettimeout() == 0.1
            for call in (lambda: sock.recv(10), lambda: sock.recv_into(bytearray(10)),
                         lambda: sock.makefile("rb").read(1)):
                start = time.monotonic()
                try:
                    call()
                except TimeoutError as exc:
                    caught.append((str(exc), time.monotonic() - start >= 0.08))
            sock.setblocking(False)
            try:
                sock.recv(10)
            except BlockingIOError:
                caught.append("nonblocking")
            # sendall under a timeout: the client does not read, the buffers fill.
            sock.settimeout(0.2)
            try:
                sock.sendall(b"x" * (64 << 20))
            except TimeoutError as exc:
                caught.append(str(exc))

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        with connect(server.server_address):
            assert wait_for(lambda: len(caught) == 5, timeout=TIMEOUT)
    assert caught == [("timed out", True)] * 3 + ["nonblocking", "timed out"]


def test_timers_of_many_greenlets_fire_in_order(gl):
    order = []
    hub = greenlets.get_hub()
    for delay in (0.15, 0.05, 0.1, 0.0):
        hub.spawn(lambda d=delay: (gl.sleep(d), order.append(d)))
    gl.sleep(0.3)
    assert order == [0.0, 0.05, 0.1, 0.15]


def test_serving_threads_leave_no_descriptors_behind(gl):
    def once():
        server = gl.GreenletTCPServer((HOST, 0), LineEcho)
        with serving(server):
            assert request_reply(server.server_address, b"x\n") == b"x\n"

    once()
    before = fd_count()
    for _ in range(30):
        once()  # each serve_forever thread makes a hub of its own
    assert wait_for(lambda: fd_count() <= before, timeout=5), (before, fd_count())


# --------------------------------------------------------------------------- the hub


def test_hub_fd_waiters(gl):
    hub = greenlets.get_hub()
    a, b = socket.socketpair()
    events = []
    try:
        a.setblocking(False)

        def reader():
            events.append(("timed out", hub.wait_fd(a.fileno(), greenlets.POLLIN,
                                                   time.monotonic() + 0.05)))
            events.append(("ready", hub.wait_fd(a.fileno(), greenlets.POLLIN, -1.0)))
            events.append(a.recv(10))

        def second_reader():
            try:
                hub.wait_fd(a.fileno(), greenlets.POLLIN, -1.0)
            except RuntimeError as exc:
                events.append("refused: " + str(exc).split(" fd")[0])

        hub.spawn(reader)
        hub.spawn(second_reader)
        gl.sleep(0.1)
        b.send(b"data")
        gl.sleep(0.05)
        assert events == [
            "refused: another greenlet is already waiting to read from",
            ("timed out", True), ("ready", False), b"data",
        ]
        # A writable socket is ready at once.
        assert hub.wait_fd(b.fileno(), greenlets.POLLOUT, time.monotonic() + 5) is False
        # forget_fd() wakes whoever waits on the descriptor.
        woken = []
        hub.spawn(lambda: woken.append(hub.wait_fd(a.fileno(), greenlets.POLLIN, -1.0)))
        gl.sleep(0.01)
        hub.forget_fd(a.fileno())
        gl.sleep(0.01)
        assert woken == [False]
    finally:
        hub.forget_fd(a.fileno())
        a.close()
        b.close()


def test_hub_wake_threadsafe_and_kill(gl):
    hub = greenlets.get_hub()
    me = greenlets.getcurrent()
    threading.Timer(0.05, hub.wake_threadsafe, (me,)).start()
    start = time.monotonic()
    hub.park()  # woken by the other thread through the wake-up descriptor
    assert time.monotonic() - start < 2.0
    ended = []

    def victim():
        try:
            gl.sleep(10)
        except BaseException as exc:
            ended.append(type(exc).__name__)
            raise

    glet = hub.spawn(victim)
    gl.sleep(0.01)
    hub.kill(glet)
    gl.sleep(0.01)
    assert ended == ["GreenletExit"] and glet.dead


def test_hub_cannot_block_itself(gl):
    hub = greenlets.get_hub()
    caught = []
    hub.call_threadsafe(lambda: caught.append(_try(hub.sleep, 1)))
    gl.sleep(0.05)
    assert caught == ["RuntimeError"]


def _try(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return type(exc).__name__
    return None


def test_green_socket_listener_dup_and_sendfile(gl, tmp_path):
    payload = os.urandom(200_000)
    path = tmp_path / "payload"
    path.write_bytes(payload)
    listener = greenlets.GreenSocket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(5)
    listener.settimeout(TIMEOUT)
    received = []

    def client():
        with gl.connect(listener.getsockname(), timeout=TIMEOUT) as c:
            received.append(recv_until_eof(c))

    try:
        hub = greenlets.get_hub()
        hub.spawn(client)
        conn, _addr = listener.accept()  # the main greenlet parks; the client runs
        with conn:
            assert isinstance(conn, greenlets.GreenSocket)
            with conn.dup() as twin:
                assert isinstance(twin, greenlets.GreenSocket)
                assert twin.gettimeout() == conn.gettimeout()
            with open(path, "rb") as f:
                assert conn.sendfile(f) == len(payload)
        gl.sleep(0)
        assert wait_for(lambda: (gl.sleep(0.01), received)[1], timeout=TIMEOUT)
        assert received == [payload]
        # accept() under a timeout
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


# --------------------------------------------------------------------------- helpers


def test_sleep_is_cooperative(gl):
    class H(gl.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            gl.sleep(0.3)
            self.wfile.write(b"slept\n")

    server = type("S", (Backlog, gl.GreenletTCPServer), {})((HOST, 0), H)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(100)]
        try:
            start = time.monotonic()
            for c in clients:
                c.sendall(b"go\n")
            for c in clients:
                assert c.makefile("rb").readline() == b"slept\n"
            elapsed = time.monotonic() - start
        finally:
            for c in clients:
                c.close()
    # 100 sleeps of 0.3 s in one thread: concurrent, not 30 s in a row.
    assert elapsed < 2.0


def test_sleep_outside_a_server(gl):
    start = time.monotonic()
    gl.sleep(0.05)
    gl.sleep(0)
    assert 0.04 <= time.monotonic() - start < 2.0


def test_to_thread(gl):
    def blocking(seconds, result=None, fail=False):
        time.sleep(seconds)
        if fail:
            raise KeyError("from the worker")
        return (result, threading.get_ident())

    class H(gl.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line == b"slow\n":
                value, ident = gl.to_thread(blocking, 0.5, result="done")
                assert ident != threading.get_ident()
                try:
                    gl.to_thread(blocking, 0, fail=True)
                except KeyError as exc:
                    value += " " + exc.args[0]
                self.wfile.write(value.encode() + b"\n")
            else:
                self.wfile.write(line)

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        with connect(server.server_address) as slow:
            slow.sendall(b"slow\n")
            time.sleep(0.05)
            # While the worker sleeps, the hub keeps serving.
            start = time.monotonic()
            assert request_reply(server.server_address, b"quick\n") == b"quick\n"
            assert time.monotonic() - start < 0.3
            assert slow.makefile("rb").readline() == b"done from the worker\n"
    # Outside a server too (the main greenlet of this thread waits on the hub).
    assert gl.to_thread(blocking, 0.01, result=5)[0] == 5


def test_to_thread_limit_assigned_on_greenlets_takes_effect(gl, monkeypatch):
    # The README's setting: cysocketserver.greenlets.TO_THREAD_MAX_THREADS, read at each call.
    from cysocketserver.threadpool import WorkerPool

    default = greenlets.TO_THREAD_MAX_THREADS
    pool = WorkerPool(8, name="test-green-to_thread")
    monkeypatch.setattr(greenlets, "_to_thread_pool", pool)
    monkeypatch.setattr(greenlets, "TO_THREAD_MAX_THREADS", 1)
    workers = []

    def caller():
        workers.append(greenlets.to_thread(lambda: (time.sleep(0.05), threading.get_ident())[1]))

    try:
        greenlets.get_hub()  # spawn() runs tasks on this thread's hub
        for _ in range(4):
            greenlets.spawn(caller)
        deadline = time.monotonic() + TIMEOUT
        while len(workers) < 4 and time.monotonic() < deadline:
            greenlets.sleep(0.01)
        assert len(workers) == 4
        assert pool.max_threads == 1
        assert len(set(workers)) == 1
    finally:
        pool.shutdown(wait=True, timeout=TIMEOUT)
    monkeypatch.undo()
    assert greenlets.TO_THREAD_MAX_THREADS == default
    assert greenlets._to_thread_pool is not pool

def test_proxy_through_connect(gl):
    upstream = type("U", (Backlog, gl.ThreadingTCPServer), {})((HOST, 0), LineEcho)
    upstream.daemon_threads = True

    class Proxy(gl.StreamRequestHandler):
        def handle(self):
            with gl.connect(upstream.server_address, timeout=TIMEOUT) as up:
                assert up.gettimeout() == TIMEOUT
                back = up.makefile("rb")
                for line in self.rfile:
                    up.sendall(b"via proxy: " + line)
                    self.wfile.write(back.readline())

    proxy = type("S", (Backlog, gl.GreenletTCPServer), {})((HOST, 0), Proxy)
    with serving(upstream), serving(proxy):
        clients = [connect(proxy.server_address) for _ in range(20)]
        try:
            for rnd in range(3):
                for i, c in enumerate(clients):
                    c.sendall(b"%d.%d\n" % (i, rnd))
                for i, c in enumerate(clients):
                    assert c.makefile("rb").readline() == b"via proxy: %d.%d\n" % (i, rnd)
        finally:
            for c in clients:
                c.close()


def test_connect_errors(gl):
    with socket.socket() as s:
        s.bind((HOST, 0))
        address = s.getsockname()  # bound, not listening: connections are refused
        with pytest.raises(ConnectionRefusedError):
            gl.connect(address, timeout=TIMEOUT)
    with socket.create_server((HOST, 0)) as listener:
        with gl.connect(("localhost", listener.getsockname()[1]), timeout=TIMEOUT) as c:
            assert c.getpeername()[1] == listener.getsockname()[1]


def test_hub_block_warning(gl):
    class S(gl.GreenletTCPServer):
        hub_block_warning = 0.05

    class H(gl.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"block\n":
                time.sleep(0.15)  # not cooperative: holds the hub
            self.wfile.write(b"ok\n")

    server = S((HOST, 0), H)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with serving(server):
            assert request_reply(server.server_address, b"quick\n") == b"ok\n"
            assert not [w for w in caught if "kept the hub" in str(w.message)]
            assert request_reply(server.server_address, b"block\n") == b"ok\n"
            assert wait_for(lambda: [w for w in caught if "kept the hub" in str(w.message)])
    found = [w for w in caught if "kept the hub" in str(w.message)]
    assert len(found) == 1
    assert issubclass(found[0].category, RuntimeWarning)
    assert ".H for ('127.0.0.1'" in str(found[0].message)


# --------------------------------------------------------------------------- other servers


def test_udp_server(gl):
    idents = set()

    class H(gl.DatagramRequestHandler):
        def handle(self):
            idents.add(threading.get_ident())
            gl.sleep(0.01)
            self.wfile.write(self.rfile.read().upper())

    server = gl.GreenletUDPServer((HOST, 0), H)
    with serving(server):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            for i in range(20):
                c.sendto(b"dgram %d" % i, server.server_address)
            replies = sorted(c.recvfrom(100)[0] for _ in range(20))
    assert replies == sorted(b"DGRAM %d" % i for i in range(20))
    assert len(idents) == 1


@needs_unix
def test_unix_stream_server(gl, short_tmp):
    path = os.path.join(short_tmp, "sock")
    server = gl.GreenletUnixStreamServer(path, LineEcho)
    with serving(server):
        for _ in range(3):
            assert request_reply(path, b"unix\n", family=socket.AF_UNIX) == b"unix\n"


@needs_unix
def test_unix_datagram_server(gl, short_tmp):
    path = os.path.join(short_tmp, "srv")

    class H(gl.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(b"got " + self.rfile.read())

    server = gl.GreenletUnixDatagramServer(path, H)
    with serving(server):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            c.bind(os.path.join(short_tmp, "cli"))
            c.settimeout(TIMEOUT)
            c.sendto(b"x", path)
            assert c.recvfrom(100)[0] == b"got x"


def test_buffered_wfile_and_unbuffered_rfile(gl):
    class H(gl.StreamRequestHandler):
        rbufsize = 0
        wbufsize = 1 << 16

        def handle(self):
            data = self.rfile.read(5)
            self.wfile.write(data * 100000)

    server = gl.GreenletTCPServer((HOST, 0), H)
    with serving(server):
        assert request_reply(server.server_address, b"abcde") == b"abcde" * 100000


# --------------------------------------------------------------------------- subprocesses

CTRL_C_SCRIPT = r"""
import signal, socket, sys, threading, time
import cysocketserver

class H(cysocketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()  # the client never sends: the handler waits on the hub

class S(cysocketserver.GreenletTCPServer):
    block_on_close = False

server = S(("127.0.0.1", 0), H)
client = socket.create_connection(server.server_address)
main = threading.main_thread().ident
threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
start = time.monotonic()
try:
    if sys.argv[1] == "serve_forever":
        server.serve_forever(poll_interval=60)
    else:
        server.handle_request()  # serves the client, then waits for its handler
except KeyboardInterrupt:
    print("interrupted after %.2fs" % (time.monotonic() - start))
finally:
    server.server_close()
    print("closed", cysocketserver.IMPLEMENTATION)
"""


@pytest.mark.parametrize("method", ["serve_forever", "handle_request"])
def test_ctrl_c_interrupts_the_hub(engine_env, method):
    engine, env = engine_env
    proc = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, method],
                          env=subprocess_env(**env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("interrupted after"), proc.stdout + proc.stderr
    assert float(lines[0].split()[2].rstrip("s")) < 5
    assert lines[1] == f"closed {engine}"


def test_ten_thousand_idle_connections_one_thread(engine_env):
    engine, env = engine_env
    start = time.monotonic()
    out = run_subprocess(["scale", "10000"], timeout=60, **env)
    elapsed = time.monotonic() - start
    line = [x for x in out.splitlines() if x.startswith("SCALE ")][0]
    stats = json.loads(line[len("SCALE "):])
    print(f"\n{engine}: {stats['connections']} connections (of {stats['wanted']} wanted; "
          f"RLIMIT_NOFILE {stats['nofile']}), {stats['per_connection'] / 1024:.1f} KiB each, "
          f"all served in {stats['seconds_to_serve_all']:.2f} s")
    assert stats["engine"] == engine
    assert stats["connections"] >= min(10000, stats["nofile"] - 100)
    assert stats["handlers"] == stats["connections"] + 1  # plus the control connection
    assert stats["threads"] == 1 and stats["idents"] == 1
    assert stats["per_connection"] < 64 * 1024
    assert elapsed < 30


def test_http_server_after_install(engine_env):
    engine, env = engine_env
    out = run_subprocess(["http"], timeout=90, **env)
    assert f"HTTP-OK engine={engine}" in out
