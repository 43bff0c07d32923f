"""Behavioural tests of the documented socketserver API.

Every test that takes the ``ss`` fixture runs twice: against the stdlib's
``socketserver`` and against ``cysocketserver``.  The stdlib run is the
reference; a difference in behaviour shows up as a failure of the ``cy`` run.
"""
import array
import inspect
import io
import itertools
import os
import selectors
import socket
import socketserver as _stdlib
import subprocess
import sys
import threading
import time

import pytest

from support_net import (
    HAVE_FORK,
    HAVE_UNIX,
    HOST,
    TIMEOUT,
    bounded_shutdown,
    connect,
    join_or_fail,
    recv_until_eof,
    request_reply,
    reset_close,
    serving,
    start_thread,
    subprocess_env,
    wait_for,
)

STDLIB_ALL = sorted(_stdlib.__all__)
STDLIB_CLASSES = [name for name in STDLIB_ALL if inspect.isclass(getattr(_stdlib, name))]

needs_unix = pytest.mark.skipif(not HAVE_UNIX, reason="needs AF_UNIX")
needs_fork = pytest.mark.skipif(not HAVE_FORK, reason="needs os.fork")
# Forking from a process that has threads warns on 3.12+; that is expected here.
fork_ok = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")

CLASS_ATTRIBUTES = [
    "allow_reuse_address",
    "allow_reuse_port",
    "request_queue_size",
    "timeout",
    "address_family",
    "socket_type",
    "max_packet_size",
    "daemon_threads",
    "block_on_close",
    "max_children",
    "active_children",
    "rbufsize",
    "wbufsize",
    "disable_nagle_algorithm",
]


class ClientThread:
    """Runs a client function in a thread; ``result()`` joins and re-raises."""

    def __init__(self, fn, *args):
        self._value = None
        self._error = None

        def run():
            try:
                self._value = fn(*args)
            except BaseException as exc:
                self._error = exc

        self._thread = start_thread(run)

    def result(self, timeout=TIMEOUT):
        join_or_fail(self._thread, timeout, "client thread")
        if self._error is not None:
            raise self._error
        return self._value


def one_request(server, client_fn):
    """Handle exactly one request with ``handle_request`` while ``client_fn`` talks to it."""
    server.timeout = TIMEOUT  # handle_request must not block forever
    client = ClientThread(client_fn, server.server_address)
    server.handle_request()
    return client.result()


# --------------------------------------------------------------------------- API surface


def test_all_covers_stdlib(stdlib_ss, cy_ss):
    missing = set(stdlib_ss.__all__) - set(cy_ss.__all__)
    assert not missing, f"missing from cysocketserver.__all__: {sorted(missing)}"


def test_extra_api(cy_ss):
    assert cy_ss.IMPLEMENTATION in ("compiled", "python")
    assert callable(cy_ss.install)


@pytest.mark.parametrize("name", STDLIB_ALL)
def test_public_name_is_class(ss, name):
    obj = getattr(ss, name, None)
    assert obj is not None, f"{ss.__name__}.{name} is missing"
    assert inspect.isclass(obj)


@pytest.mark.parametrize("name", STDLIB_CLASSES)
def test_not_a_reexport_of_stdlib(cy_ss, name):
    cls = getattr(cy_ss, name)
    assert cls is not getattr(_stdlib, name)
    stdlib_classes = {getattr(_stdlib, n) for n in STDLIB_CLASSES}
    leaked = [c for c in cls.__mro__ if c in stdlib_classes]
    assert not leaked, f"{name} inherits stdlib classes {leaked}"


def _public_methods(cls):
    names = []
    for name in dir(cls):
        if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value):
            names.append(name)
    return names


@pytest.mark.parametrize("name", STDLIB_CLASSES)
def test_signatures_match_stdlib(cy_ss, name):
    std_cls = getattr(_stdlib, name)
    cy_cls = getattr(cy_ss, name)
    if std_cls.__init__ is not object.__init__:
        assert str(inspect.signature(cy_cls)) == str(inspect.signature(std_cls)), "constructor"
    for meth in _public_methods(std_cls):
        assert hasattr(cy_cls, meth), f"{name}.{meth} is missing"
        std_sig = inspect.signature(getattr(std_cls, meth))
        try:
            cy_sig = inspect.signature(getattr(cy_cls, meth))
        except (TypeError, ValueError) as exc:
            pytest.fail(f"{name}.{meth}: no signature ({exc})")
        assert str(cy_sig) == str(std_sig), f"{name}.{meth}"


@pytest.mark.parametrize("name", STDLIB_CLASSES)
def test_class_attributes_match_stdlib(cy_ss, name):
    std_cls = getattr(_stdlib, name)
    cy_cls = getattr(cy_ss, name)
    public_data = [
        n
        for n in dir(std_cls)
        if not n.startswith("_") and not callable(getattr(std_cls, n))
    ]
    missing = object()
    for attr in sorted(set(CLASS_ATTRIBUTES) | set(public_data)):
        std_value = getattr(std_cls, attr, missing)
        cy_value = getattr(cy_cls, attr, missing)
        if std_value is missing:
            continue
        assert cy_value is not missing, f"{name}.{attr} is missing"
        assert cy_value == std_value and type(cy_value) is type(std_value), (
            f"{name}.{attr}: {cy_value!r} != stdlib {std_value!r}"
        )


@pytest.mark.parametrize("name", STDLIB_CLASSES)
def test_mro_shape_matches_stdlib(cy_ss, name):
    def public_mro(module, cls):
        return [c.__name__ for c in cls.__mro__ if getattr(module, c.__name__, None) is c]

    std_cls = getattr(_stdlib, name)
    cy_cls = getattr(cy_ss, name)
    assert public_mro(cy_ss, cy_cls) == public_mro(_stdlib, std_cls)
    for base in std_cls.__mro__:
        if base is object:
            continue
        assert issubclass(cy_cls, getattr(cy_ss, base.__name__)), base.__name__


def test_combined_classes(ss):
    assert ss.ThreadingTCPServer.__bases__ == (ss.ThreadingMixIn, ss.TCPServer)
    assert ss.ThreadingUDPServer.__bases__ == (ss.ThreadingMixIn, ss.UDPServer)
    assert issubclass(ss.UDPServer, ss.TCPServer)
    assert issubclass(ss.TCPServer, ss.BaseServer)
    assert issubclass(ss.StreamRequestHandler, ss.BaseRequestHandler)
    assert issubclass(ss.DatagramRequestHandler, ss.BaseRequestHandler)
    if HAVE_FORK:
        assert ss.ForkingTCPServer.__bases__ == (ss.ForkingMixIn, ss.TCPServer)
        assert ss.ForkingUDPServer.__bases__ == (ss.ForkingMixIn, ss.UDPServer)
    if HAVE_UNIX:
        assert issubclass(ss.UnixStreamServer, ss.TCPServer)
        assert issubclass(ss.UnixDatagramServer, ss.UDPServer)
        assert ss.ThreadingUnixStreamServer.__bases__ == (ss.ThreadingMixIn, ss.UnixStreamServer)
        assert ss.ThreadingUnixDatagramServer.__bases__ == (
            ss.ThreadingMixIn,
            ss.UnixDatagramServer,
        )
    # The mix-ins must come first in the MRO so their process_request wins.
    assert ss.ThreadingTCPServer.process_request is ss.ThreadingMixIn.process_request


# --------------------------------------------------------------------------- construction


def test_bind_and_activate_false(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"pong:" + self.rfile.readline())

    server = ss.TCPServer((HOST, 0), H, bind_and_activate=False)
    try:
        assert server.server_address == (HOST, 0)
        assert server.socket.getsockname()[1] == 0  # not bound yet
        server.allow_reuse_address = True  # instance override, honoured by server_bind
        server.server_bind()
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert server.server_address[1] != 0
        server.server_activate()
        reply = one_request(server, lambda a: request_reply(a, b"x\n"))
        assert reply == b"pong:x\n"
    finally:
        server.server_close()


def test_server_address_resolved_after_bind(ss):
    with ss.TCPServer(("localhost", 0), ss.BaseRequestHandler) as server:
        assert server.server_address == server.socket.getsockname()
        assert isinstance(server.server_address, tuple)
        host, port = server.server_address
        assert host == "127.0.0.1" and port > 0
    with ss.UDPServer((HOST, 0), ss.BaseRequestHandler) as server:
        assert server.server_address == server.socket.getsockname()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_server(ss):
    class S(ss.TCPServer):
        address_family = socket.AF_INET6

    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())

    try:
        server = S(("::1", 0), H)
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    with server:
        assert len(server.server_address) == 4
        reply = one_request(
            server, lambda a: request_reply(a[:2], b"v6\n", family=socket.AF_INET6)
        )
        assert reply == b"v6\n"


def test_fileno(ss):
    with ss.TCPServer((HOST, 0), ss.BaseRequestHandler) as server:
        assert server.fileno() == server.socket.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(server, selectors.EVENT_READ)  # the server is selectable
            assert sel.select(0) == []
            with connect(server.server_address):
                assert wait_for(lambda: sel.select(0.1))


@pytest.mark.parametrize("server_name", ["TCPServer", "UDPServer"])
@pytest.mark.parametrize("reuse_addr,reuse_port", list(itertools.product([False, True], repeat=2)))
def test_reuse_options(ss, server_name, reuse_addr, reuse_port):
    class S(getattr(ss, server_name)):
        allow_reuse_address = reuse_addr
        allow_reuse_port = reuse_port

    with S((HOST, 0), ss.BaseRequestHandler) as server:
        sock = server.socket
        assert bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)) == reuse_addr
        if hasattr(socket, "SO_REUSEPORT"):
            assert bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)) == reuse_port


def test_reuse_port_two_servers_share_port(ss):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    class S(ss.TCPServer):
        allow_reuse_port = True

    with S((HOST, 0), ss.BaseRequestHandler) as first:
        with S(first.server_address, ss.BaseRequestHandler) as second:
            assert second.server_address == first.server_address


@needs_unix
@pytest.mark.parametrize("server_name", ["UnixStreamServer", "UnixDatagramServer"])
def test_reuse_port_ignored_for_unix(ss, is_stdlib, short_tmp, server_name):
    class S(getattr(ss, server_name)):
        allow_reuse_port = True

    path = os.path.join(short_tmp, "s")
    try:
        server = S(path, ss.BaseRequestHandler)
    except OSError as exc:
        if is_stdlib:
            pytest.xfail(f"this stdlib sets SO_REUSEPORT on AF_UNIX (fixed in later CPython): {exc}")
        raise
    with server:
        assert server.server_address == path


def test_context_manager_closes(ss):
    with ss.TCPServer((HOST, 0), ss.BaseRequestHandler) as server:
        assert isinstance(server, ss.TCPServer)
        assert server.socket.fileno() >= 0
    assert server.socket.fileno() == -1
    server2 = ss.UDPServer((HOST, 0), ss.BaseRequestHandler)
    assert server2.__enter__() is server2
    server2.__exit__(None, None, None)
    assert server2.socket.fileno() == -1


@pytest.mark.parametrize("method", ["serve_forever", "handle_request"])
def test_closed_server_refuses_to_serve(ss, method):
    server = ss.TCPServer((HOST, 0), ss.BaseRequestHandler)
    server.server_close()
    runner = ClientThread(getattr(server, method))
    with pytest.raises(ValueError):
        runner.result()


def test_failed_bind_closes_socket(ss):
    with ss.TCPServer((HOST, 0), ss.BaseRequestHandler) as taken:
        closed = []

        class S(ss.TCPServer):
            def server_close(self):
                closed.append(self.socket)
                super().server_close()

        with pytest.raises(OSError):
            S(taken.server_address, ss.BaseRequestHandler)
        assert len(closed) == 1 and closed[0].fileno() == -1
    with pytest.raises(OverflowError):
        ss.TCPServer((HOST, -1), ss.BaseRequestHandler)


# --------------------------------------------------------------------------- serving loop


def test_serve_forever_and_shutdown(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline().upper())

    server = ss.TCPServer((HOST, 0), H)
    with serving(server):
        for i in range(3):
            assert request_reply(server.server_address, b"abc%d\n" % i) == b"ABC%d\n" % i
    assert server.socket.fileno() == -1


def test_serve_forever_restartable(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"ok")

    server = ss.TCPServer((HOST, 0), H)
    try:
        for _ in range(2):
            with serving(server, close=False):
                assert request_reply(server.server_address, b"") == b"ok"
    finally:
        server.server_close()


def test_shutdown_immediately_after_start(ss):
    servers = [ss.TCPServer((HOST, 0), ss.BaseRequestHandler) for _ in range(10)]
    threads = []
    try:
        for s in servers:
            t = start_thread(s.serve_forever, 0.01)
            threads.append(t)
            bounded_shutdown(s)
        for t in threads:
            join_or_fail(t, what="serve_forever")
    finally:
        for s in servers:
            s.server_close()


def test_shutdown_before_serve_forever_starts(ss):
    server = ss.TCPServer((HOST, 0), ss.BaseRequestHandler)
    try:
        stopper = start_thread(server.shutdown)
        time.sleep(0.1)
        assert stopper.is_alive(), "shutdown() must wait for the loop to stop"
        loop = start_thread(server.serve_forever, 0.05)
        join_or_fail(loop, 5, "serve_forever after an early shutdown()")
        join_or_fail(stopper, 5, "shutdown()")
    finally:
        server.server_close()


CTRL_C_SCRIPT = r"""
import importlib, signal, sys, threading, time
mod = importlib.import_module(sys.argv[1])
server = mod.TCPServer(("127.0.0.1", 0), mod.BaseRequestHandler)
main = threading.main_thread().ident
threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
start = time.monotonic()
try:
    if sys.argv[2] == "serve_forever":
        server.serve_forever(poll_interval=60)
    else:
        server.handle_request()  # no timeout: would wait forever
except KeyboardInterrupt:
    print("interrupted after %.2fs" % (time.monotonic() - start))
finally:
    server.server_close()
"""


@pytest.mark.parametrize("method", ["serve_forever", "handle_request"])
def test_ctrl_c_interrupts_waiting_server(ss, method):
    """SIGINT while the loop waits (even with a 60s poll_interval) raises KeyboardInterrupt."""
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_SCRIPT, ss.__name__, method],
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("interrupted after"), proc.stdout + proc.stderr
    assert float(proc.stdout.split()[2].rstrip("s")) < 5


def test_base_server_with_own_transport(ss):
    """A BaseServer subclass that brings its own socket through the documented hooks."""

    class PairServer(ss.BaseServer):
        def __init__(self, handler):
            super().__init__(("pair", 0), handler)
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socket.bind((HOST, 0))
            self.socket.listen(5)
            self.calls = []

        def fileno(self):
            self.calls.append("fileno")
            return self.socket.fileno()

        def get_request(self):
            self.calls.append("get_request")
            conn, addr = self.socket.accept()
            return conn, ("peer", addr[1])

        def shutdown_request(self, request):
            request.close()

        def server_close(self):
            super().server_close()
            self.socket.close()

    seen = []

    class H(ss.BaseRequestHandler):
        def handle(self):
            seen.append(self.client_address[0])
            self.request.sendall(self.request.recv(100)[::-1])

    server = PairServer(H)
    address = server.socket.getsockname()
    with serving(server):
        assert request_reply(address, b"abc") == b"cba"
    assert seen == ["peer"]
    assert "fileno" in server.calls and "get_request" in server.calls
    assert server.socket.fileno() == -1


def test_shutdown_requested_from_a_handler(ss):
    """The documented way to stop from inside: call shutdown() from another thread."""
    stoppers = []

    class H(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"quit\n":
                t = threading.Thread(target=self.server.shutdown, daemon=True)
                stoppers.append(t)
                t.start()
            self.wfile.write(b"bye")

    server = ss.ThreadingTCPServer((HOST, 0), H)
    loop = start_thread(server.serve_forever, 0.05)
    try:
        assert request_reply(server.server_address, b"quit\n") == b"bye"
        join_or_fail(loop, what="serve_forever after shutdown() from a handler")
        join_or_fail(stoppers[0], what="shutdown() called from a handler")
    finally:
        if loop.is_alive():
            bounded_shutdown(server)
        server.server_close()


def test_private_shutdown_flag_set_from_a_handler(ss):
    """Widespread recipe: a handler sets the stdlib's private flag to stop serve_forever()."""

    class H(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"quit\n":
                self.server._BaseServer__shutdown_request = True
            self.wfile.write(b"bye")

    server = ss.TCPServer((HOST, 0), H)
    loop = start_thread(server.serve_forever, 0.05)
    try:
        assert request_reply(server.server_address, b"quit\n") == b"bye"
        join_or_fail(loop, what="serve_forever after the private flag was set")
        assert server._BaseServer__shutdown_request is False  # reset once the loop returned
    finally:
        if loop.is_alive():
            bounded_shutdown(server)
        server.server_close()


def test_base_exception_propagates_from_serve_forever(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"exit\n":
                raise SystemExit(3)
            self.wfile.write(b"alive")

    server = ss.TCPServer((HOST, 0), H)
    try:
        first = ClientThread(server.serve_forever, 0.05)
        assert request_reply(server.server_address, b"exit\n") == b""
        with pytest.raises(SystemExit):
            first.result()
        # The loop can be started again and stopped normally afterwards.
        with serving(server, close=False):
            assert request_reply(server.server_address, b"x\n") == b"alive"
    finally:
        server.server_close()


def test_service_actions_called_while_serving(ss):
    class S(ss.TCPServer):
        calls = 0

        def service_actions(self):
            type(self).calls += 1

    server = S((HOST, 0), ss.BaseRequestHandler)
    with serving(server, poll_interval=0.01):
        assert wait_for(lambda: S.calls >= 3), S.calls


def test_serve_forever_ignores_timeout(ss):
    class S(ss.TCPServer):
        timeout = 0.01
        timeouts = 0

        def handle_timeout(self):
            type(self).timeouts += 1

    server = S((HOST, 0), ss.BaseRequestHandler)
    with serving(server, poll_interval=0.01):
        time.sleep(0.2)
    assert S.timeouts == 0


def test_handle_request_timeout(ss):
    class S(ss.TCPServer):
        timeout = 0.2
        timeouts = 0

        def handle_timeout(self):
            type(self).timeouts += 1
            return "timed-out"

    with S((HOST, 0), ss.BaseRequestHandler) as server:
        start = time.monotonic()
        result = server.handle_request()
        elapsed = time.monotonic() - start
    assert S.timeouts == 1
    assert result == "timed-out"
    assert 0.15 <= elapsed < 3


@pytest.mark.parametrize(
    "sock_timeout,server_timeout",
    [(0.2, None), (0.2, 5.0), (5.0, 0.2), (None, 0.2)],
)
def test_handle_request_uses_min_of_socket_and_server_timeout(ss, sock_timeout, server_timeout):
    timeouts = []

    class S(ss.TCPServer):
        timeout = server_timeout

        def handle_timeout(self):
            timeouts.append(time.monotonic())

    with S((HOST, 0), ss.BaseRequestHandler) as server:
        server.socket.settimeout(sock_timeout)
        start = time.monotonic()
        server.handle_request()
        elapsed = time.monotonic() - start
    assert len(timeouts) == 1
    assert 0.15 <= elapsed < 3


def test_handle_request_serves_pending_connection(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"served")

    with ss.TCPServer((HOST, 0), H) as server:
        with connect(server.server_address) as c:
            server.handle_request()  # no timeout: a request is already pending
            assert recv_until_eof(c) == b"served"


# --------------------------------------------------------------------------- hooks


def _recording_classes(ss, server_base, handler_base, log):
    class Server(server_base):
        def get_request(self):
            log.append("get_request")
            return super().get_request()

        def verify_request(self, request, client_address):
            log.append("verify_request")
            return super().verify_request(request, client_address)

        def process_request(self, request, client_address):
            log.append("process_request")
            return super().process_request(request, client_address)

        def process_request_thread(self, request, client_address):
            log.append("process_request_thread")
            return super().process_request_thread(request, client_address)

        def finish_request(self, request, client_address):
            log.append("finish_request")
            return super().finish_request(request, client_address)

        def shutdown_request(self, request):
            log.append("shutdown_request")
            return super().shutdown_request(request)

        def close_request(self, request):
            log.append("close_request")
            return super().close_request(request)

        def handle_error(self, request, client_address):
            log.append("handle_error")

        def handle_timeout(self):
            log.append("handle_timeout")

    class Handler(handler_base):
        def setup(self):
            log.append("setup")
            super().setup()

        def handle(self):
            log.append("handle")
            self.wfile.write(self.rfile.readline())

        def finish(self):
            log.append("finish")
            super().finish()

    return Server, Handler


SYNC_ORDER = [
    "get_request",
    "verify_request",
    "process_request",
    "finish_request",
    "setup",
    "handle",
    "finish",
    "shutdown_request",
    "close_request",
]
THREAD_ORDER = SYNC_ORDER[:3] + ["process_request_thread"] + SYNC_ORDER[3:]


@pytest.mark.parametrize(
    "server_name,expected",
    [
        ("TCPServer", SYNC_ORDER),
        ("ThreadingTCPServer", THREAD_ORDER),
        ("UDPServer", SYNC_ORDER),
        ("ThreadingUDPServer", THREAD_ORDER),
    ],
)
def test_hook_call_order(ss, server_name, expected):
    log = []
    base = getattr(ss, server_name)
    stream = base.socket_type == socket.SOCK_STREAM
    handler = ss.StreamRequestHandler if stream else ss.DatagramRequestHandler
    Server, Handler = _recording_classes(ss, base, handler, log)
    with Server((HOST, 0), Handler) as server:
        server.timeout = TIMEOUT
        if stream:
            reply = one_request(server, lambda a: request_reply(a, b"hook\n"))
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.settimeout(TIMEOUT)
                c.sendto(b"hook\n", server.server_address)
                server.handle_request()
                reply = c.recvfrom(100)[0]
        assert reply == b"hook\n"
        assert wait_for(lambda: "close_request" in log)
    assert log == expected


@pytest.mark.parametrize("hook", ["get_request", "verify_request", "process_request", "fileno"])
def test_hooks_patched_on_the_instance_are_honoured(ss, hook):
    """mock.patch.object(server, hook) style: an instance attribute overrides the method."""
    from unittest import mock

    class H(ss.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"handled")

    with ss.TCPServer((HOST, 0), H) as server:
        original = getattr(server, hook)
        if hook == "verify_request":
            patched = mock.Mock(return_value=False)
        else:
            patched = mock.Mock(side_effect=original)
        with mock.patch.object(server, hook, patched):
            reply = one_request(server, lambda a: request_reply(a, b""))
    assert patched.called
    assert reply == (b"" if hook == "verify_request" else b"handled")


@pytest.mark.parametrize("default_timeout", [None, 2.5])
@pytest.mark.parametrize("listen_timeout", [None, 5.0])
def test_accepted_socket_properties(ss, default_timeout, listen_timeout):
    """What handlers get as self.request: a plain blocking socket.socket, like accept() gives."""
    seen = {}

    class H(ss.BaseRequestHandler):
        def handle(self):
            r = self.request
            seen.update(
                type=type(r),
                timeout=r.gettimeout(),
                blocking=r.getblocking(),
                family=r.family,
                kind=r.type,
                inheritable=r.get_inheritable(),
                peer=r.getpeername(),
                address=self.client_address,
            )

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(default_timeout)
    try:
        with ss.TCPServer((HOST, 0), H) as server:
            if listen_timeout is not None:
                server.socket.settimeout(listen_timeout)
            server.timeout = TIMEOUT
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
                server.handle_request()
                client = c.getsockname()
    finally:
        socket.setdefaulttimeout(previous)
    assert seen == {
        "type": socket.socket,
        "timeout": default_timeout,
        "blocking": True,
        "family": socket.AF_INET,
        "kind": socket.SOCK_STREAM,
        "inheritable": False,
        "peer": client,
        "address": client,
    }


def test_verify_request_false(ss):
    log = []

    class S(ss.TCPServer):
        def verify_request(self, request, client_address):
            log.append(("verify", client_address))
            return False

        def shutdown_request(self, request):
            log.append("shutdown_request")
            super().shutdown_request(request)

    class H(ss.BaseRequestHandler):
        def handle(self):
            log.append("handle")

    with S((HOST, 0), H) as server:
        def client(addr):
            with connect(addr) as c:
                return c.getsockname(), recv_until_eof(c)

        (client_addr, reply) = one_request(server, client)
    assert reply == b""
    assert log == [("verify", client_addr), "shutdown_request"]


@pytest.mark.parametrize("server_name", ["TCPServer", "ThreadingTCPServer"])
def test_handler_exception_goes_to_handle_error(ss, server_name):
    errors = []
    requests = []

    class S(getattr(ss, server_name)):
        def handle_error(self, request, client_address):
            errors.append((request, client_address, sys.exc_info()[0]))

    class H(ss.StreamRequestHandler):
        def handle(self):
            requests.append(self.request)
            line = self.rfile.readline()
            if line.startswith(b"boom"):
                raise ValueError("boom")
            self.wfile.write(b"ok:" + line)

    server = S((HOST, 0), H)
    with serving(server):
        with connect(server.server_address) as c:
            client_addr = c.getsockname()
            c.sendall(b"boom\n")
            assert recv_until_eof(c) == b""
        assert wait_for(lambda: errors)
        for i in range(3):
            assert request_reply(server.server_address, b"hi%d\n" % i) == b"ok:hi%d\n" % i
    assert len(errors) == 1
    request, address, exc_type = errors[0]
    assert request is requests[0]
    assert address == client_addr
    assert exc_type is ValueError


def test_handler_finish_runs_after_exception(ss):
    log = []

    class S(ss.TCPServer):
        def handle_error(self, request, client_address):
            log.append("handle_error")

    class H(ss.BaseRequestHandler):
        def handle(self):
            log.append("handle")
            raise RuntimeError("x")

        def finish(self):
            log.append("finish")

    with S((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b""))
    assert log == ["handle", "finish", "handle_error"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_handle_request(ss, exc_type):
    log = []

    class S(ss.TCPServer):
        def handle_error(self, request, client_address):
            log.append("handle_error")

        def shutdown_request(self, request):
            log.append("shutdown_request")
            super().shutdown_request(request)

    class H(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"raise\n":
                raise exc_type()
            self.wfile.write(b"fine")

    with S((HOST, 0), H) as server:
        server.timeout = TIMEOUT
        client = ClientThread(request_reply, server.server_address, b"raise\n")
        with pytest.raises(exc_type):
            server.handle_request()
        assert client.result() == b""  # the connection was still shut down
        assert log == ["shutdown_request"]
        # The server is still usable afterwards.
        assert one_request(server, lambda a: request_reply(a, b"x\n")) == b"fine"


@pytest.mark.parametrize("server_name", ["TCPServer", "ThreadingTCPServer"])
def test_default_handle_error_prints_traceback(ss, capsys, server_name):
    done = threading.Event()

    class S(getattr(ss, server_name)):
        def shutdown_request(self, request):
            super().shutdown_request(request)
            done.set()

    class H(ss.BaseRequestHandler):
        def handle(self):
            raise ValueError("boom-traceback")

    with S((HOST, 0), H) as server:
        def client(addr):
            with connect(addr) as c:
                name = c.getsockname()
                recv_until_eof(c)
                return name

        client_addr = one_request(server, client)
        assert done.wait(TIMEOUT)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "-" * 40
    assert lines[1] == f"Exception occurred during processing of request from {client_addr}"
    assert lines[2] == "Traceback (most recent call last):"
    assert "ValueError: boom-traceback" in lines
    assert lines[-1] == "-" * 40


# --------------------------------------------------------------------------- StreamRequestHandler


def test_stream_handler_files(ss):
    seen = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            seen["rfile_buffered"] = isinstance(self.rfile, io.BufferedIOBase)
            seen["wfile_buffered"] = isinstance(self.wfile, io.BufferedIOBase)
            seen["connection"] = self.connection is self.request
            seen["wfile_fileno"] = self.wfile.fileno() == self.request.fileno()
            seen["rfile_fileno"] = self.rfile.fileno() == self.request.fileno()
            seen["writable"] = self.wfile.writable()
            seen["readable"] = self.rfile.readable()
            seen["lines"] = [self.rfile.readline(), self.rfile.readline(3), self.rfile.read(4)]
            seen["rest"] = self.rfile.read()
            self.server.files = (self.rfile, self.wfile)

    with ss.TCPServer((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b"line one\nabcdefgh\ntail"))
        rfile, wfile = server.files
    assert seen == {
        "rfile_buffered": True,
        "wfile_buffered": True,
        "connection": True,
        "wfile_fileno": True,
        "rfile_fileno": True,
        "writable": True,
        "readable": True,
        "lines": [b"line one\n", b"abc", b"defg"],
        "rest": b"h\ntail",
    }
    assert rfile.closed and wfile.closed  # finish() closed them


def _public_names(obj):
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.parametrize("rbufsize,wbufsize", [(-1, 0), (0, -1), (8192, 8192)])
def test_stream_files_api_surface(ss, rbufsize, wbufsize):
    """Every public attribute of the stdlib's rfile/wfile exists on ours."""
    seen = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            seen["rfile"] = _public_names(self.rfile)
            seen["wfile"] = _public_names(self.wfile)

    H.rbufsize, H.wbufsize = rbufsize, wbufsize

    class StdH(_stdlib.StreamRequestHandler):
        def handle(self):
            seen["std_rfile"] = _public_names(self.rfile)
            seen["std_wfile"] = _public_names(self.wfile)

    StdH.rbufsize, StdH.wbufsize = rbufsize, wbufsize
    for server_cls, handler in ((ss.TCPServer, H), (_stdlib.TCPServer, StdH)):
        with server_cls((HOST, 0), handler) as server:
            one_request(server, lambda a: request_reply(a, b""))
    assert seen["std_rfile"] - seen["rfile"] == set(), "rfile lacks these"
    assert seen["std_wfile"] - seen["wfile"] == set(), "wfile lacks these"


def test_request_close_inside_handler_keeps_files_usable(ss):
    """Like socket.makefile(): the files hold the descriptor open until they are closed."""
    seen = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            seen["first"] = self.rfile.read(2)
            self.request.close()
            seen["fileno_after_close"] = self.request.fileno()
            seen["rest"] = self.rfile.read(3)
            seen["written"] = self.wfile.write(b"xy")

    with ss.TCPServer((HOST, 0), H) as server:
        reply = one_request(server, lambda a: request_reply(a, b"abcdef"))
    assert reply == b"xy"
    assert seen["first"] == b"ab" and seen["rest"] == b"cde" and seen["written"] == 2
    assert seen["fileno_after_close"] >= 0


def test_rfile_iteration(ss):
    seen = []

    class H(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                seen.append(line)

    with ss.TCPServer((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b"a\nbb\n\nccc"))
    assert seen == [b"a\n", b"bb\n", b"\n", b"ccc"]


def test_rbufsize_zero_is_unbuffered(ss):
    seen = {}

    class H(ss.StreamRequestHandler):
        rbufsize = 0

        def handle(self):
            seen["sock"] = getattr(self.rfile, "_sock", None) is self.request
            seen["line"] = self.rfile.readline()
            self.request.settimeout(5)
            try:
                seen["rest"] = self.request.recv(100)  # still in the socket if unbuffered
            except socket.timeout:
                seen["rest"] = None
            self.wfile.write(b"done")

    def client(addr):
        with connect(addr) as c:
            c.sendall(b"ab\ncd")
            return recv_until_eof(c)

    with ss.TCPServer((HOST, 0), H) as server:
        assert one_request(server, client) == b"done"
    assert seen == {"sock": True, "line": b"ab\n", "rest": b"cd"}


@pytest.mark.parametrize("wbufsize", [0, -1, 1024])
def test_wbufsize(ss, wbufsize):
    seen = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            seen["buffered"] = isinstance(self.wfile, io.BufferedIOBase)
            seen["count"] = self.wfile.write(b"hello")
            self.rfile.readline()  # wait until the client has looked

    H.wbufsize = wbufsize

    def client(addr):
        with connect(addr) as c:
            # Unbuffered data arrives well within 5s; buffered data must not arrive at all.
            c.settimeout(5 if wbufsize == 0 else 0.3)
            try:
                early = c.recv(100)
            except socket.timeout:
                early = None
            c.settimeout(TIMEOUT)
            c.sendall(b"looked\n")
            return early, recv_until_eof(c)

    with ss.TCPServer((HOST, 0), H) as server:
        early, final = one_request(server, client)
    assert seen == {"buffered": True, "count": 5}
    if wbufsize == 0:
        assert (early, final) == (b"hello", b"")  # sent at once, no flush needed
    else:
        assert (early, final) == (None, b"hello")  # held until finish() flushed


def test_handler_timeout_attribute(ss):
    seen = {}

    class H(ss.StreamRequestHandler):
        timeout = 0.2

        def handle(self):
            seen["gettimeout"] = self.request.gettimeout()
            start = time.monotonic()
            try:
                self.rfile.readline()
            except Exception as exc:
                seen["exc"] = type(exc)
            seen["elapsed"] = time.monotonic() - start
            try:  # like socket.SocketIO: a timed-out reader refuses further reads
                self.rfile.readline()
            except Exception as exc:
                seen["again"] = type(exc)

    def client(addr):
        with connect(addr) as c:
            return recv_until_eof(c)  # silent until the server hangs up

    with ss.TCPServer((HOST, 0), H) as server:
        assert one_request(server, client) == b""
    assert seen["gettimeout"] == 0.2
    assert issubclass(seen["exc"], TimeoutError)
    assert seen.get("again") is OSError
    assert 0.1 < seen["elapsed"] < 3


@pytest.mark.parametrize("flag", [False, True])
def test_disable_nagle_algorithm(ss, flag):
    seen = {}

    class H(ss.StreamRequestHandler):
        disable_nagle_algorithm = flag

        def handle(self):
            seen["nodelay"] = bool(
                self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            )

    class Server(ss.TCPServer):
        # cysocketserver sets TCP_NODELAY on what it accepts unless told not to (see
        # test_nodelay.py); with that off, the handler's flag alone decides, as in the stdlib.
        tcp_nodelay = False

    with Server((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b""))
    assert seen == {"nodelay": flag}


def test_wfile_write_sends_everything(ss):
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB
    small = bytearray(b"xyz")
    ints = array.array("i", range(10))
    counts = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            counts["big"] = self.wfile.write(payload)
            counts["small"] = self.wfile.write(small)
            counts["view"] = self.wfile.write(memoryview(ints))
            counts["empty"] = self.wfile.write(b"")

    def client(addr):
        with connect(addr) as c:
            return recv_until_eof(c)

    with ss.TCPServer((HOST, 0), H) as server:
        data = one_request(server, client)
    assert counts == {"big": len(payload), "small": 3, "view": ints.itemsize * 10, "empty": 0}
    assert len(data) == len(payload) + 3 + ints.itemsize * 10
    assert data == payload + b"xyz" + ints.tobytes()


def test_rfile_large_body(ss):
    body = os.urandom(3 * 1024 * 1024)
    seen = {}

    class H(ss.StreamRequestHandler):
        def handle(self):
            n = int(self.rfile.readline())
            seen["body"] = self.rfile.read(n)
            seen["after"] = self.rfile.read()

    with ss.TCPServer((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b"%d\n" % len(body) + body))
    assert seen["body"] == body
    assert seen["after"] == b""


def test_tls_wrapped_listening_socket(ss, certificate):
    """The HTTPS recipe: replace server.socket with an SSL-wrapped one after construction."""
    import ssl

    seen = []

    class H(ss.StreamRequestHandler):
        def handle(self):
            seen.append((type(self.request), self.request.version()))
            for line in self.rfile:
                self.wfile.write(b"tls:" + line)

    class S(ss.ThreadingTCPServer):
        daemon_threads = True

    server = S((HOST, 0), H)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)

    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    with serving(server):
        for i in range(3):
            with client_context.wrap_socket(connect(server.server_address)) as c:
                f = c.makefile("rb")
                c.sendall(b"one%d\n" % i)
                assert f.readline() == b"tls:one%d\n" % i
                c.sendall(b"two\n")
                assert f.readline() == b"tls:two\n"
                f.close()
    assert len(seen) == 3
    assert all(issubclass(t, ssl.SSLSocket) and v for t, v in seen), seen


# --------------------------------------------------------------------------- datagrams


def test_datagram_handler(ss):
    seen = {}

    class H(ss.DatagramRequestHandler):
        def handle(self):
            seen["packet"] = self.packet
            seen["socket"] = self.socket is self.server.socket
            seen["request"] = self.request == (self.packet, self.socket)
            seen["rfile"] = self.rfile.read()
            seen["client_address"] = self.client_address
            self.wfile.write(b"reply:")
            self.wfile.write(self.packet)

    with ss.UDPServer((HOST, 0), H) as server, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as c:
        c.settimeout(TIMEOUT)
        c.bind((HOST, 0))
        c.sendto(b"datagram", server.server_address)
        server.timeout = TIMEOUT
        server.handle_request()
        reply, source = c.recvfrom(1000)
        assert source == server.server_address
        assert seen["client_address"] == c.getsockname()
    assert reply == b"reply:datagram"
    assert seen["packet"] == b"datagram" and seen["rfile"] == b"datagram"
    assert seen["socket"] and seen["request"]


def test_udp_clients_that_vanish_do_not_disturb_server(ss):
    """Replies to ports already closed (ICMP unreachable) must not upset the server."""

    class H(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(b"re:" + self.packet)

    server = ss.UDPServer((HOST, 0), H)
    with serving(server):
        for _ in range(3):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
                gone.bind((HOST, 0))
                gone.sendto(b"then I leave", server.server_address)
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.bind((HOST, 0))
            for i in range(3):
                c.sendto(b"still there %d" % i, server.server_address)
                assert c.recvfrom(100)[0] == b"re:still there %d" % i


def test_handler_closes_request_itself(ss):
    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"early")
            self.request.close()

    server = ss.TCPServer((HOST, 0), H)
    with serving(server):
        for _ in range(3):
            assert request_reply(server.server_address, b"") == b"early"


@pytest.mark.parametrize("max_packet_size,sent", [(16, 100), (None, 10000)])
def test_max_packet_size_truncates(ss, max_packet_size, sent):
    seen = []

    class S(ss.UDPServer):
        pass

    if max_packet_size is not None:
        S.max_packet_size = max_packet_size

    class H(ss.DatagramRequestHandler):
        def handle(self):
            seen.append(self.packet)

    data = bytes(i % 251 for i in range(sent))
    with S((HOST, 0), H) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.sendto(data, server.server_address)
        server.timeout = TIMEOUT
        server.handle_request()
    limit = max_packet_size or 8192
    assert seen == [data[:limit]]


# --------------------------------------------------------------------------- every server class


SERVER_CASES = [
    ("TCPServer", False),
    ("ThreadingTCPServer", False),
    ("UDPServer", False),
    ("ThreadingUDPServer", False),
    pytest.param("UnixStreamServer", True, marks=needs_unix),
    pytest.param("ThreadingUnixStreamServer", True, marks=needs_unix),
    pytest.param("UnixDatagramServer", True, marks=needs_unix),
    pytest.param("ThreadingUnixDatagramServer", True, marks=needs_unix),
]


def _echo_handler(ss, stream):
    if stream:
        class H(ss.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"echo:" + self.rfile.readline())
    else:
        class H(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(b"echo:" + self.rfile.readline())
    return H


def _echo_client(family, stream, addr, payload, client_path=None):
    if stream:
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(TIMEOUT)
            c.connect(addr)
            c.sendall(payload)
            return recv_until_eof(c)
    with socket.socket(family, socket.SOCK_DGRAM) as c:
        c.settimeout(TIMEOUT)
        if client_path:
            c.bind(client_path)
        c.sendto(payload, addr)
        return c.recvfrom(65536)[0]


@pytest.mark.parametrize("server_name,unix", SERVER_CASES)
def test_server_classes_echo(ss, short_tmp, server_name, unix):
    cls = getattr(ss, server_name)
    stream = cls.socket_type == socket.SOCK_STREAM
    family = socket.AF_UNIX if unix else socket.AF_INET
    assert cls.address_family == family
    addr = os.path.join(short_tmp, "srv") if unix else (HOST, 0)
    server = cls(addr, _echo_handler(ss, stream))
    if unix:
        assert server.server_address == addr
    with serving(server):
        for i in range(3):
            client_path = os.path.join(short_tmp, "c%d" % i) if unix and not stream else None
            reply = _echo_client(family, stream, server.server_address, b"m%d\n" % i, client_path)
            assert reply == b"echo:m%d\n" % i


@pytest.mark.parametrize("unix", [False, pytest.param(True, marks=needs_unix)])
def test_user_composed_mixin(ss, short_tmp, unix):
    base = ss.UnixStreamServer if unix else ss.TCPServer

    class MyServer(ss.ThreadingMixIn, base):
        daemon_threads = True

    addr = os.path.join(short_tmp, "mix") if unix else (HOST, 0)
    server = MyServer(addr, _echo_handler(ss, True))
    family = socket.AF_UNIX if unix else socket.AF_INET
    with serving(server):
        assert _echo_client(family, True, server.server_address, b"q\n") == b"echo:q\n"


# --------------------------------------------------------------------------- threading


@pytest.mark.parametrize("daemon", [False, True])
def test_daemon_threads(ss, daemon):
    seen = {}
    done = threading.Event()

    class S(ss.ThreadingTCPServer):
        daemon_threads = daemon

    class H(ss.BaseRequestHandler):
        def handle(self):
            me = threading.current_thread()
            seen["daemon"] = me.daemon
            seen["main"] = me is threading.main_thread()
            done.set()

    with S((HOST, 0), H) as server:
        one_request(server, lambda a: request_reply(a, b""))
        assert done.wait(TIMEOUT)
    assert seen == {"daemon": daemon, "main": False}


def test_block_on_close_true_waits_for_handlers(ss):
    finished = threading.Event()

    class H(ss.BaseRequestHandler):
        def handle(self):
            time.sleep(0.4)
            finished.set()

    server = ss.ThreadingTCPServer((HOST, 0), H)
    assert server.block_on_close is True
    with connect(server.server_address):
        server.timeout = TIMEOUT
        server.handle_request()  # dispatches to a thread and returns
        assert not finished.is_set()
        start = time.monotonic()
        server.server_close()
        assert finished.is_set(), "server_close() returned before the handler finished"
        assert time.monotonic() - start < TIMEOUT


def test_block_on_close_false_does_not_wait(ss):
    release = threading.Event()
    finished = threading.Event()

    class S(ss.ThreadingTCPServer):
        block_on_close = False

    class H(ss.BaseRequestHandler):
        def handle(self):
            release.wait(TIMEOUT)
            finished.set()

    server = S((HOST, 0), H)
    try:
        with connect(server.server_address):
            server.timeout = TIMEOUT
            server.handle_request()
            server.server_close()
            assert not finished.is_set(), "server_close() waited although block_on_close=False"
    finally:
        release.set()
    assert finished.wait(TIMEOUT)


def test_threads_are_reaped(ss):
    """CPython #37193: the list of handler threads must not grow without bound."""

    class H(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"k")

    with ss.ThreadingTCPServer((HOST, 0), H) as server:
        server.timeout = TIMEOUT
        for _ in range(50):
            with connect(server.server_address) as c:
                server.handle_request()
                assert recv_until_eof(c) == b"k"
        assert len(server._threads) < 10


def test_threading_handles_clients_concurrently(ss):
    barrier = threading.Barrier(3, timeout=TIMEOUT)

    class H(ss.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            barrier.wait()  # only passes if three handlers run at once
            self.wfile.write(b"together")

    server = ss.ThreadingTCPServer((HOST, 0), H)
    server.daemon_threads = True
    with serving(server):
        clients = [ClientThread(request_reply, server.server_address, b"hi\n") for _ in range(3)]
        assert [c.result() for c in clients] == [b"together"] * 3


# --------------------------------------------------------------------------- forking


def _not_a_zombie(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@needs_fork
@fork_ok
@pytest.mark.parametrize("server_name", ["ForkingTCPServer", "ForkingUDPServer"])
def test_forking_servers(ss, server_name):
    cls = getattr(ss, server_name)
    stream = cls.socket_type == socket.SOCK_STREAM

    if stream:
        class H(ss.StreamRequestHandler):
            def handle(self):
                self.rfile.readline()
                self.wfile.write(b"%d" % os.getpid())
    else:
        class H(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(b"%d" % os.getpid())

    pids = []
    with cls((HOST, 0), H) as server:
        server.timeout = TIMEOUT
        for _ in range(3):
            if stream:
                with connect(server.server_address) as c:
                    c.sendall(b"who\n")
                    server.handle_request()
                    pids.append(int(recv_until_eof(c)))
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.settimeout(TIMEOUT)
                    c.sendto(b"who", server.server_address)
                    server.handle_request()
                    pids.append(int(c.recvfrom(100)[0]))
        assert os.getpid() not in pids and len(set(pids)) == 3
        assert set(server.active_children or ()) <= set(pids)

        def reaped():
            server.service_actions()
            return not server.active_children

        assert wait_for(reaped)
    assert all(_not_a_zombie(pid) for pid in pids)


def _peak_overlap(intervals):
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


@needs_fork
@fork_ok
@pytest.mark.parametrize("mode", ["handle_request", "serve_forever"])
@pytest.mark.parametrize("server_name", ["ForkingTCPServer", "ForkingUDPServer"])
def test_forking_max_children(ss, server_name, mode):
    """No more than max_children children run at once, even when requests arrive in a burst."""
    base = getattr(ss, server_name)
    stream = base.socket_type == socket.SOCK_STREAM

    class S(base):
        max_children = 2

    def timed_work():
        start = time.monotonic()
        time.sleep(0.3)
        return b"%r %r" % (start, time.monotonic())

    if stream:
        class H(ss.StreamRequestHandler):
            def handle(self):
                self.wfile.write(timed_work())
    else:
        class H(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(timed_work())

    clients = []
    sizes = []
    with S((HOST, 0), H) as server:
        server.timeout = TIMEOUT
        try:
            for _ in range(5):  # the whole burst is queued before the server looks
                if stream:
                    clients.append(connect(server.server_address))
                else:
                    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    c.settimeout(TIMEOUT)
                    c.bind((HOST, 0))
                    c.sendto(b"work", server.server_address)
                    clients.append(c)
            if mode == "handle_request":
                for _ in range(5):
                    server.handle_request()
                    sizes.append(len(server.active_children))
                    server.service_actions()
                assert max(sizes) <= 2
            if stream:
                read = recv_until_eof
            else:
                def read(c):
                    return c.recvfrom(100)[0]
            if mode == "serve_forever":
                with serving(server, close=False):
                    replies = [read(c) for c in clients]
            else:
                replies = [read(c) for c in clients]
            intervals = [tuple(map(float, r.split())) for r in replies]
        finally:
            for c in clients:
                c.close()
    peak = _peak_overlap(intervals)
    assert peak <= 2, f"{peak} children ran at once with max_children=2"


@needs_fork
@fork_ok
@pytest.mark.parametrize("block", [True, False])
def test_forking_server_close_waits(ss, short_tmp, block):
    marker = os.path.join(short_tmp, "done")

    class S(ss.ForkingTCPServer):
        block_on_close = block

    class H(ss.BaseRequestHandler):
        def handle(self):
            time.sleep(0.5)
            with open(marker, "w"):
                pass

    server = S((HOST, 0), H)
    with connect(server.server_address):
        server.timeout = TIMEOUT
        server.handle_request()
        (pid,) = server.active_children
        server.server_close()
        if block:
            assert os.path.exists(marker)
            assert not server.active_children
        else:
            assert not os.path.exists(marker)
            os.waitpid(pid, 0)


# --------------------------------------------------------------------------- tutorial-style servers


def test_chat_server(ss):
    clients_lock = threading.Lock()
    clients = set()

    class ChatHandler(ss.StreamRequestHandler):
        def setup(self):
            super().setup()
            with clients_lock:
                clients.add(self)

        def handle(self):
            for line in self.rfile:
                with clients_lock:
                    others = [c for c in clients if c is not self]
                for other in others:
                    try:
                        other.wfile.write(line)
                    except OSError:
                        pass

        def finish(self):
            with clients_lock:
                clients.discard(self)
            super().finish()

    class ChatServer(ss.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = ChatServer((HOST, 0), ChatHandler)
    names = ["ann", "bob", "cid"]
    with serving(server):
        socks = [connect(server.server_address) for _ in names]
        try:
            assert wait_for(lambda: len(clients) == 3)
            files = [s.makefile("rb") for s in socks]
            for name, s in zip(names, socks):
                for i in range(2):
                    s.sendall(b"%s says %d\n" % (name.encode(), i))
            for name, f in zip(names, files):
                got = sorted(f.readline() for _ in range(4))
                expected = sorted(
                    b"%s says %d\n" % (other.encode(), i)
                    for other in names
                    if other != name
                    for i in range(2)
                )
                assert got == expected, name
            for f in files:
                f.close()
        finally:
            for s in socks:
                s.close()
        assert wait_for(lambda: not clients)


def test_error_tolerant_server(ss):
    errors = []

    class S(ss.ThreadingTCPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            errors.append(sys.exc_info()[0])

    class DoubleHandler(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                value = int(line)  # garbage raises ValueError
                self.wfile.write(b"%d\n" % (value * 2))

    server = S((HOST, 0), DoubleHandler)
    with serving(server):
        def good_client(seed):
            with connect(server.server_address) as c:
                f = c.makefile("rb")
                answers = []
                for i in range(10):
                    c.sendall(b"%d\n" % (seed * 100 + i))
                    answers.append(int(f.readline()))
                f.close()
                return answers

        def bad_client():
            c = connect(server.server_address)
            c.sendall(b"\xff\x00garbage\x7f\n")
            time.sleep(0.05)
            reset_close(c)

        good = [ClientThread(good_client, seed) for seed in range(4)]
        bad = [ClientThread(bad_client) for _ in range(3)]
        for b in bad:
            b.result()
        for seed, g in enumerate(good):
            assert g.result() == [2 * (seed * 100 + i) for i in range(10)]
        assert good_client(9) == [2 * (900 + i) for i in range(10)]
        assert wait_for(lambda: len(errors) >= 3)
    assert set(errors) <= {ValueError, ConnectionResetError, BrokenPipeError}


@pytest.mark.parametrize("hook", ["process_request", "finish_request", "shutdown_request", "close_request"])
@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_single_overridden_hook_is_called_by_serve_forever(ss, kind, hook):
    """Overriding just one hook of a plain server must still route requests through it
    (cysocketserver's loop takes shortcuts only past hooks left as they are)."""
    calls = []
    base = ss.TCPServer if kind == "tcp" else ss.UDPServer

    def recorder(self, *args):
        calls.append(hook)
        return getattr(base, hook)(self, *args)

    server_class = type("Server", (base,), {hook: recorder})

    if kind == "tcp":
        class H(ss.StreamRequestHandler):
            def handle(self):
                self.wfile.write(self.rfile.readline())
    else:
        class H(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(self.rfile.read())

    with serving(server_class((HOST, 0), H)) as server:
        for n in range(3):
            payload = b"ping %d\n" % n
            if kind == "tcp":
                assert request_reply(server.server_address, payload) == payload
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.settimeout(5)
                    client.sendto(payload, server.server_address)
                    assert client.recvfrom(100)[0] == payload
        wait_for(lambda: len(calls) >= 3)
    assert calls.count(hook) >= 3
