"""What a stream handler asks of its request: the stdlib's calls, unless nothing can tell.

The stdlib's StreamRequestHandler.setup() asks the request for its files
(``makefile('rb', rbufsize)``, and ``makefile('wb', wbufsize)`` for a buffered writer) and its
unbuffered writer calls ``sendall()``.  Users rely on that to test handlers over fake requests
and to serve over socket-like objects.  This package's compiled streams drive the descriptor
themselves, so they are used only where nothing can tell: here every request that is not a
plain socket is checked to get exactly the stdlib's calls, by running the same request
through the stdlib and through this package and comparing what the request saw.
"""
import io
import socket
import ssl
import threading
from unittest import mock

import pytest

import cysocketserver
from cysocketserver import handlers
from support_net import HOST, TIMEOUT, connect, join_or_fail, recv_until_eof

REQUEST = b"first line\nabcdef"
# Methods a subclass of socket.socket may override; which ones the stdlib's handler calls
# (through its files) is what the recording shows.
SOCKET_METHODS = ["makefile", "recv_into", "sendall", "fileno", "gettimeout", "recv", "send",
                  "settimeout", "shutdown", "close"]


class EchoHandlerMixin:
    timeout = TIMEOUT

    def handle(self):
        line = self.rfile.readline()
        rest = self.rfile.read(3)
        self.wfile.write(b"got " + line + rest)


def echo_handler(ss, **attributes):
    return type("Echo", (EchoHandlerMixin, ss.StreamRequestHandler), attributes)


# --------------------------------------------------------------------------- fake requests


class KeptBytesIO(io.BytesIO):
    """A BytesIO whose contents can still be read after close() (finish() closes wfile)."""

    def close(self):
        self.kept = self.getvalue()
        super().close()


def fake_request():
    """What CPython's test_httpservers hands a handler: a Mock whose makefile() gives BytesIO."""
    request = mock.Mock()
    files = {"rb": io.BytesIO(REQUEST), "wb": KeptBytesIO()}
    request.makefile.side_effect = lambda mode, *args: files[mode]
    return request, files


@pytest.mark.parametrize("rbufsize", [-1, 0, 7])
@pytest.mark.parametrize("wbufsize", [0, 64])
@pytest.mark.parametrize("nagle_off", [False, True])
def test_fake_request_gets_the_stdlib_calls(stdlib_ss, cy_ss, rbufsize, wbufsize, nagle_off):
    seen = {}
    for ss in (stdlib_ss, cy_ss):
        request, files = fake_request()
        handler = echo_handler(ss, rbufsize=rbufsize, wbufsize=wbufsize,
                               disable_nagle_algorithm=nagle_off)
        handler(request, ("127.0.0.1", 1234), mock.Mock())
        seen[ss.__name__] = (request.mock_calls, getattr(files["wb"], "kept", None))
    assert seen["cysocketserver"] == seen["socketserver"]
    calls, written = seen["cysocketserver"]
    assert mock.call.makefile("rb", rbufsize) in calls
    if wbufsize:
        assert written == b"got first line\nabc"
    else:
        assert mock.call.sendall(b"got first line\nabc") in calls


def test_fake_request_writer_is_the_stdlibs(cy_ss):
    """The unbuffered writer over a fake request: sendall() per write, its size returned."""
    request, _files = fake_request()
    wfiles = []

    class Handler(cy_ss.StreamRequestHandler):
        def handle(self):
            wfiles.append(self.wfile)
            assert self.wfile.write(memoryview(b"abcd").cast("I")) == 4
            assert self.wfile.writable() and self.wfile.fileno() is request.fileno.return_value

    Handler(request, ("127.0.0.1", 1234), mock.Mock())
    assert request.sendall.call_count == 1
    assert wfiles[0].closed


def test_datagram_handler_fake_request(stdlib_ss, cy_ss):
    seen = {}
    for ss in (stdlib_ss, cy_ss):
        sock = mock.Mock()

        class Handler(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(b"reply to " + self.rfile.read())

        Handler((b"ping", sock), ("127.0.0.1", 1234), mock.Mock())
        seen[ss.__name__] = sock.mock_calls
    assert seen["cysocketserver"] == seen["socketserver"]
    assert seen["cysocketserver"] == [mock.call.sendto(b"reply to ping", ("127.0.0.1", 1234))]


# --------------------------------------------------------------------------- socket subclasses


def recording_socket_class(overridden, slots=True):
    """A socket.socket subclass whose ``overridden`` methods record their calls, then defer."""
    namespace = {"__slots__": ("calls",)} if slots else {}

    def wrap(name):
        def method(self, *args, **kwargs):
            self.calls.append((name, args[:2] if name == "makefile" else ()))
            return getattr(super(cls, self), name)(*args, **kwargs)
        method.__name__ = name
        return method

    for name in overridden:
        namespace[name] = wrap(name)
    cls = type("RecordingSocket", (socket.socket,), namespace)
    return cls


def serve_one(ss, make_request, handler_class):
    """One request through ss.TCPServer, its socket made by make_request(accepted socket)."""
    made = []

    class Server(ss.TCPServer):
        def get_request(self):
            sock, address = super().get_request()
            request = make_request(sock)
            made.append(request)
            return request, address

    with Server((HOST, 0), handler_class) as server:
        t = threading.Thread(target=server.handle_request, daemon=True)
        t.start()
        with connect(server.server_address) as client:
            client.sendall(REQUEST)
            client.shutdown(socket.SHUT_WR)
            reply = recv_until_eof(client)
        join_or_fail(t, what="handle_request")
    return made[0], reply


def take_over(cls):
    def make(sock):
        new = cls(sock.family, sock.type, sock.proto, sock.detach())
        new.calls = []
        return new
    return make


@pytest.mark.parametrize("overridden", [[name] for name in SOCKET_METHODS] + [SOCKET_METHODS],
                         ids=lambda names: "+".join(names) if len(names) < 3 else "all")
@pytest.mark.parametrize("wbufsize", [0, 1024])
def test_socket_subclass_sees_the_stdlib_calls(stdlib_ss, cy_ss, overridden, wbufsize):
    cls = recording_socket_class(overridden)
    seen = {}
    for ss in (stdlib_ss, cy_ss):
        request, reply = serve_one(ss, take_over(cls), echo_handler(ss, wbufsize=wbufsize))
        seen[ss.__name__] = (request.calls, reply)
    assert seen["cysocketserver"] == seen["socketserver"]
    assert seen["cysocketserver"][1] == b"got first line\nabc"


def test_method_set_on_the_instance_is_called(stdlib_ss, cy_ss):
    """A subclass without __slots__ may have recv_into/sendall replaced on one instance."""
    cls = recording_socket_class([], slots=False)

    def make(sock):
        new = take_over(cls)(sock)
        for name in ("recv_into", "sendall"):
            def method(*args, _name=name, _bound=getattr(new, name)):
                new.calls.append((_name, ()))
                return _bound(*args)
            setattr(new, name, method)
        return new

    seen = {}
    for ss in (stdlib_ss, cy_ss):
        request, reply = serve_one(ss, make, echo_handler(ss))
        seen[ss.__name__] = (request.calls, reply)
    assert seen["cysocketserver"] == seen["socketserver"]
    assert ("recv_into", ()) in seen["cysocketserver"][0]
    assert ("sendall", ()) in seen["cysocketserver"][0]


def test_tls_request_served_through_its_methods(stdlib_ss, cy_ss, certificate):
    """An ssl.SSLSocket request (its recv_into/sendall decrypt and encrypt) on both modules."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    for ss in (stdlib_ss, cy_ss):
        for rbufsize, wbufsize in ((-1, 0), (0, 0), (-1, 100)):
            handler = echo_handler(ss, rbufsize=rbufsize, wbufsize=wbufsize)

            class Server(ss.TCPServer):
                def get_request(self):
                    sock, address = super().get_request()
                    return server_context.wrap_socket(sock, server_side=True), address

            with Server((HOST, 0), handler) as server:
                t = threading.Thread(target=server.handle_request, daemon=True)
                t.start()
                with client_context.wrap_socket(connect(server.server_address)) as client:
                    client.sendall(REQUEST)
                    reply = b""
                    while len(reply) < 18 and (chunk := client.recv(100)):
                        reply += chunk
                join_or_fail(t, what="handle_request")
            assert reply == b"got first line\nabc", (ss.__name__, rbufsize, wbufsize)


# --------------------------------------------------------------------------- the rule itself


class Plain(socket.socket):
    pass


class Slotted(socket.socket):
    __slots__ = ()


class OverridesRecv(socket.socket):
    def recv(self, *args):
        return super().recv(*args)


@pytest.mark.parametrize("name", sorted(handlers._STANDS_IN_FOR))
def test_overriding_what_the_streams_stand_in_for_gives_the_stdlib_files(name):
    if hasattr(socket.socket, name):
        def deferring(self, *args, **kwargs):
            return getattr(super(cls, self), name)(*args, **kwargs)
        cls = type("Overrides", (socket.socket,), {name: deferring})
    else:
        cls = type("Overrides", (socket.socket,), {name: property(lambda self: None)})
    with cls() as sock:
        assert not handlers._engine_streams_fit(sock)


def test_which_requests_get_the_engine_streams():
    with socket.socket() as plain, Plain() as sub, Slotted() as slotted, \
            OverridesRecv() as recv_only:
        assert handlers._engine_streams_fit(plain)
        assert handlers._engine_streams_fit(sub)
        assert handlers._engine_streams_fit(slotted)
        # The stdlib's files never call recv(): overriding it changes nothing they do.
        assert handlers._engine_streams_fit(recv_only)
        sub.unrelated = 1
        assert handlers._engine_streams_fit(sub)
        sub.recv_into = sub.recv_into
        assert not handlers._engine_streams_fit(sub)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with context.wrap_socket(socket.socket(), server_side=True, do_handshake_on_connect=False) as tls:
        assert not handlers._engine_streams_fit(tls)
    assert not handlers._engine_streams_fit(mock.Mock())
    assert not handlers._engine_streams_fit(mock.Mock(spec=socket.socket))


def test_green_socket_keeps_the_engine_streams_unless_overridden():
    greenlets = pytest.importorskip("cysocketserver.greenlets")

    class Sub(greenlets.GreenSocket):
        __slots__ = ()

    class Overriding(greenlets.GreenSocket):
        def recv_into(self, *args, **kwargs):
            return super().recv_into(*args, **kwargs)

    with greenlets.GreenSocket() as green, Sub() as sub, Overriding() as overriding:
        assert handlers._engine_streams_fit(green)
        assert handlers._engine_streams_fit(sub)
        assert not handlers._engine_streams_fit(overriding)


def test_plain_socket_handler_gets_the_engine_streams(cy_ss):
    """The fast path stays: a plain accepted socket is read and written by the engine."""
    from cysocketserver import _engine

    kinds = []

    class Handler(cy_ss.StreamRequestHandler):
        def handle(self):
            kinds.append((type(self.rfile), type(self.wfile)))
            self.wfile.write(self.rfile.readline())

    with cy_ss.TCPServer((HOST, 0), Handler) as server:
        t = threading.Thread(target=server.handle_request, daemon=True)
        t.start()
        with connect(server.server_address) as client:
            client.sendall(b"x\n")
            client.shutdown(socket.SHUT_WR)
            assert recv_until_eof(client) == b"x\n"
        join_or_fail(t, what="handle_request")
    engine = _engine.current()
    if engine.name == "compiled":
        assert kinds == [(engine.SocketReader, engine.SocketWriter)]
    else:
        assert kinds[0][1] is engine.SocketWriter


def test_green_socket_subclass_is_read_through_its_methods(cy_ss):
    greenlets = pytest.importorskip("cysocketserver.greenlets")
    calls = []

    class Recording(greenlets.GreenSocket):
        def recv_into(self, *args, **kwargs):
            calls.append("recv_into")
            return super().recv_into(*args, **kwargs)

        def sendall(self, *args, **kwargs):
            calls.append("sendall")
            return super().sendall(*args, **kwargs)

    class Server(cy_ss.GreenletTCPServer):
        def get_request(self):
            sock, address = self.socket.accept()
            return Recording.from_socket(sock), address

    with Server((HOST, 0), echo_handler(cy_ss)) as server:
        t = threading.Thread(target=server.handle_request, daemon=True)
        t.start()
        with connect(server.server_address) as client:
            client.sendall(REQUEST)
            client.shutdown(socket.SHUT_WR)
            assert recv_until_eof(client) == b"got first line\nabc"
        join_or_fail(t, what="handle_request")
    assert "recv_into" in calls and calls[-1] == "sendall"
