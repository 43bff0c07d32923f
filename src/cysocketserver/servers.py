"""The server classes: the stdlib's documented interface, with the loop delegated to the engine."""
import socket
import sys

from . import _engine
from .core import admission, guards
from .core.hooks import default_hook, noop_hook
from .core.nodelay import set_nodelay, wants_nodelay
from .core.plan import listening, make_plan, request_timeout
from .core.registry import ConnectionRegistry
from .core.state import state_of
from .models import Inline

__all__ = ["BaseServer", "TCPServer", "UDPServer"]
if hasattr(socket, "AF_UNIX"):
    __all__ += ["UnixStreamServer", "UnixDatagramServer"]


class BaseServer:
    """A server, without saying how requests arrive: subclasses (TCPServer, UDPServer) do.

    serve_forever(), handle_request() and shutdown() run on the engine's serve loop, which
    calls back into the documented hooks below in the stdlib's order.  How requests are run
    is the concurrency model's business (``_model_class``: the plain servers handle each
    request in the serving thread; the mix-ins pick a thread, a process, a pooled thread or a
    greenlet).

    The guards, class attributes like ``timeout`` (None means off, the stdlib's behaviour; a bad
    value raises TypeError or ValueError when the server is built or starts serving):

    ``max_connections``
        At this many live connections the server stops accepting (the kernel's listen backlog
        holds the rest) and resumes below it.
    ``max_connections_per_client``
        A connection from a host that already has this many is closed at once, before
        verify_request() and without a handler, and counted as rejected.
    ``idle_timeout``
        Seconds: a connection that has received no byte for this long is shut down by the
        server, whatever its handler is doing; the handler's pending read returns end-of-stream.
    ``drain_timeout``
        Seconds: server_close() stops accepting, lets running handlers finish for up to this
        long, then shuts down the connections still open and returns.

    ``stats()`` returns the server's figures as a dict.  The guards act on stream connections
    (TCP, Unix stream); ForkingMixIn refuses them, since its children own the connections.

    TLS, for stream servers (None, off by default):

    ``ssl_context``
        An ``ssl.SSLContext`` for the server side (``ssl.PROTOCOL_TLS_SERVER``, with its
        certificate chain loaded).  Every accepted connection is wrapped with it and its
        handshake run before verify_request(), which then sees the TLS socket, as the handler
        does (``self.request``).  The handshake runs in the request's own thread, pooled
        thread or greenlet, in ForkingMixIn's child where the model allows it, and in the
        serving thread for the plain servers (which handle one request at a time there
        anyway) or a process_request() of your own.  A failed handshake closes the connection
        and is counted by cause in ``stats()["tls_handshake_failures"]``.  In the greenlet
        servers the TLS socket is cooperative, as the plain one is.
    ``tls_handshake_timeout``
        Seconds a client has for its whole handshake (default 10).
    """

    timeout = None
    max_connections = None
    max_connections_per_client = None
    idle_timeout = None
    drain_timeout = None
    _model_class = Inline
    # The PROXY protocol (core/proxyproto.py): None (off, as the stdlib), "v1", "v2" or "any";
    # the peers allowed to send a header, and how long one may take to arrive.
    proxy_protocol = None
    proxy_protocol_trusted = ("127.0.0.0/8", "::1/128")
    proxy_protocol_timeout = 3.0
    # TLS (core/tls.py): an ssl.SSLContext made for the server side wraps every accepted
    # connection; its handshake, bounded as a whole by tls_handshake_timeout seconds, runs in
    # the request's own context, after the PROXY header and before verify_request().
    ssl_context = None
    tls_handshake_timeout = 10.0
    # True where other processes serve the same listening socket (a prefork worker sets it):
    # the listener is then waited on with an exclusive wake-up where the platform has one
    # (core/plan.py), so a connection wakes one idle process rather than all of them.
    _shared_listener = False

    def __init__(self, server_address, RequestHandlerClass):
        """Remember the address and handler class; check the guards (TypeError/ValueError)."""
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self._loop = self._make_loop()
        state_of(self)
        guards.check(self)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Two unrelated concurrency mix-ins in one server would silently leave one unused (a
        # mix-in derived from another, as ThreadPoolMixIn from ThreadingMixIn, overrides it).
        mixins = [klass for klass in cls.__mro__
                  if "_model_class" in vars(klass) and klass is not BaseServer]
        leaves = [klass for klass in mixins
                  if not any(other is not klass and issubclass(other, klass) for other in mixins)]
        if len(leaves) > 1:
            raise TypeError("%s combines the concurrency mix-ins %s; a server runs its requests "
                            "one way: keep one of them"
                            % (cls.__name__, ", ".join(klass.__name__ for klass in leaves)))

    # -- the server's parts, made on first use (a subclass may skip BaseServer.__init__) ---------

    def _make_loop(self):
        return _engine.current().ServeLoop()

    @property
    def _connection_registry(self):
        state = state_of(self)
        registry = state.registry
        if registry is None:
            engine = _engine.current()
            registry = state.registry = ConnectionRegistry(engine.Counters(), engine.Meter)
            state.engine_name = engine.name
        return registry

    @property
    def _started_at(self):
        return state_of(self).started_at

    @property
    def _engine_name(self):
        self._connection_registry
        return state_of(self).engine_name

    def _meter_for(self, request):
        """The byte meter of a live connection (StreamRequestHandler's streams count into it)."""
        registry = state_of(self).registry
        return None if registry is None else registry.meter_for(request)

    @property
    def _model(self):
        state = state_of(self)
        model = state.model
        if model is None:
            model = state.model = self._model_class(self)
        return model

    def _plan(self):
        model = self._model
        plan = make_plan(self, model)
        model.attach(self._loop)
        guards.attach(self, plan.guards, self._loop)
        self._start_idle_sweep(plan.guards.idle_timeout if plan.track_connections else None)
        state_of(self).plan = plan
        return plan

    def _start_idle_sweep(self, idle_timeout):
        state = state_of(self)
        sweep = state.idle_sweep
        if sweep is not None and sweep.running and sweep.idle_timeout == idle_timeout:
            return
        self._stop_idle_sweep()
        if idle_timeout is not None:
            state.idle_sweep = guards.IdleSweep(self, idle_timeout)

    def _stop_idle_sweep(self):
        state = state_of(self)
        sweep, state.idle_sweep = state.idle_sweep, None
        if sweep is not None:
            sweep.stop()

    def stats(self):
        """A snapshot of the server's figures, as a dict:

        ``connections_active``; the totals since the server was built: ``connections_total``
        (every accepted stream connection), ``connections_rejected_total`` (closed by
        max_connections_per_client), ``idle_closed_total`` (by idle_timeout),
        ``drain_finished_total`` and ``drain_cut_total`` (by server_close()'s drain),
        ``handler_errors_total`` (exceptions passed to handle_error()), ``accept_errors_total``
        (failed accept()/recvfrom() calls), ``bytes_received_total`` and ``bytes_sent_total``
        (through the handlers' rfile/wfile and the greenlet servers' cooperative sockets);
        with an ``ssl_context``: ``tls_handshakes_total``, ``tls_handshake_failures_total``,
        ``tls_versions`` (a dict: negotiated version -> handshakes) and
        ``tls_handshake_failures`` (a dict: cause -> failures; see core/tls.py);
        ``uptime_seconds``; ``server``, ``model``, ``engine``; and the concurrency model's own
        figures: ``threads_running`` (ThreadingMixIn), ``pool_threads_busy``/``_idle``/``_max``
        (ThreadPoolMixIn), ``greenlets_running`` (GreenletMixIn), ``children_active``
        (ForkingMixIn).

        Not counted: bytes a threaded handler moves with the socket's own recv()/send(), an
        unbuffered rfile (rbufsize 0) or a buffered wfile (wbufsize > 0), datagrams, and
        anything done in ForkingMixIn's children.
        """
        from .core import stats

        return stats.snapshot(self)

    @property
    def proxy_protocol_refused(self):
        """PROXY protocol headers refused, by cause ("malformed", "oversized", "checksum",
        "truncated", "slow", "untrusted"): a collections.Counter."""
        from .core import proxyproto

        return proxyproto.refusals(self)

    def proxy_header(self, request):
        """The PROXY protocol header received on ``request`` (a ProxyHeader: version, command,
        source, destination, tlvs...), or None where none was."""
        from .core import proxyproto

        return proxyproto.header_of(self, request)

    # -- serving ---------------------------------------------------------------------------------

    def server_activate(self):
        """Called by the constructor to activate the server; does nothing for a BaseServer."""

    def serve_forever(self, poll_interval=0.5):
        """Handle requests until shutdown() is called; poll_interval is not needed to notice
        a shutdown (the loop is woken), but service_actions() still runs at least that often."""
        plan = self._plan()
        with listening(self, plan.fd, plan.nonblocking):
            self._loop.serve_forever(plan, poll_interval)

    def shutdown(self):
        """Stop serve_forever() and wait until it has returned.

        Must be called from another thread than serve_forever's, or it deadlocks.
        """
        self._loop.shutdown()

    @noop_hook
    def service_actions(self):
        """Called in the serve_forever() loop after each wake-up; does nothing by default."""

    def handle_request(self):
        """Wait for and handle one request, honouring self.timeout and the socket's timeout."""
        plan = self._plan()
        with listening(self, plan.fd, self._model.cooperative):
            return self._loop.handle_request(plan, request_timeout(self))

    # Code in the wild stops a server from its own handler by setting the stdlib's private
    # flag; keep that working.
    @property
    def __shutdown_request(self):
        return self._loop.shutdown_requested

    @__shutdown_request.setter
    def __shutdown_request(self, requested):
        self._loop.request_shutdown(requested)

    @default_hook
    def _handle_request_noblock(self):
        """Take one request off the ready listener through get_request(), as the stdlib does."""
        plan = state_of(self).plan or self._plan()
        try:
            request, client_address = self.get_request()
        except BlockingIOError:
            return  # another process took it (a listener shared after fork)
        except OSError as exc:
            pause = plan.intake_error(exc.errno)
            if pause:
                self._loop.back_off(pause)
            return
        plan.backoff.reset()
        plan.admit(request, client_address)

    def handle_timeout(self):
        """Called by handle_request() when no request came within the timeout."""

    @default_hook
    def verify_request(self, request, client_address):
        """Return False to refuse the request (it is shut down unhandled)."""
        return True

    @default_hook
    def process_request(self, request, client_address):
        """Handle the request to its end in the serving thread (the mix-ins override this)."""
        self.finish_request(request, client_address)
        admission.release(self, request)

    def server_close(self):
        """Release the server's resources; the mix-ins also wait for their requests here."""
        self._stop_idle_sweep()
        self._loop.close()

    def _drain(self):
        """With a drain_timeout: wait for the open connections, then cut the rest."""
        if state_of(self).registry is not None:
            guards.drain(self, self._model.nap)

    @default_hook
    def finish_request(self, request, client_address):
        """Build the RequestHandlerClass for the request, which handles it."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request):
        """Called when a request ends; closes it."""
        self.close_request(request)

    def close_request(self, request):
        """Release what the request holds (nothing for a BaseServer)."""

    def handle_error(self, request, client_address):
        """Report a handler's exception on stderr; the server keeps going."""
        rule = "-" * 40
        print(rule, file=sys.stderr)
        print("Exception occurred during processing of request from",
              client_address, file=sys.stderr)
        import traceback  # only once something went wrong, as the stdlib does

        traceback.print_exc()
        print(rule, file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.server_close()


class TCPServer(BaseServer):
    """A server on a stream socket (TCP by default): each connection is one request.

    ``TCPServer(server_address, RequestHandlerClass, bind_and_activate=True)`` binds and
    listens at once unless told not to.  ``from_socket(sock, RequestHandlerClass)`` serves a
    listening socket made elsewhere (inherited from systemd, see ``listen_fds()``).

    For TCP, every accepted connection gets TCP_NODELAY unless ``tcp_nodelay`` is false.
    ``tcp_nodelay = True`` (this package's default; the stdlib has no such attribute): small
    writes leave at once instead of waiting, under Nagle's algorithm, for the client to
    acknowledge the previous one -- which costs handlers that answer with two writes (such as
    http.server on keep-alive connections) about 40 ms a request.  False or None leaves the
    accepted sockets as the kernel made them, as the stdlib does; a handler's
    ``disable_nagle_algorithm = True`` still sets the option either way.  Unix-domain servers
    are not affected.
    """

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5
    allow_reuse_address = False
    allow_reuse_port = False
    tcp_nodelay = True

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate=True):
        BaseServer.__init__(self, server_address, RequestHandlerClass)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self):
        """Called by the constructor to bind the socket (SO_REUSEADDR/SO_REUSEPORT first, as
        ``allow_reuse_address``/``allow_reuse_port`` ask)."""
        sock = self.socket
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # SO_REUSEPORT means nothing useful for Unix sockets and fails on some systems.
        if (self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT")
                and self.address_family in (socket.AF_INET, socket.AF_INET6)):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(self.server_address)
        self.server_address = sock.getsockname()

    def server_activate(self):
        """Called by the constructor to listen, with a backlog of ``request_queue_size``."""
        self.socket.listen(self.request_queue_size)

    @classmethod
    def from_socket(cls, sock, RequestHandlerClass):
        """A server on ``sock``, a socket that is already bound (and listening, for a stream
        socket): inherited from a service manager (``listen_fds()``) or made by the caller.

        As the stdlib's idiom ``cls(address, Handler, bind_and_activate=False)`` followed by
        assigning ``server.socket``: __init__ runs (so subclasses' own setup does), but neither
        server_bind() nor server_activate() is called, keeping the backlog the socket was
        given.  The server takes ownership: server_close() closes ``sock``.
        """
        if sock.type != cls.socket_type:
            raise ValueError("%s serves %s sockets, not %s"
                             % (cls.__name__, socket.SocketKind(cls.socket_type).name,
                                socket.SocketKind(sock.type).name))
        address = sock.getsockname()
        server = cls(address, RequestHandlerClass, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.address_family = sock.family
        server.server_address = address
        return server

    def server_close(self):
        """Close the listener; with a drain_timeout, then drain (see BaseServer)."""
        BaseServer.server_close(self)
        self.socket.close()
        self._drain()

    @default_hook
    def fileno(self):
        """The listening socket's file descriptor (what the serve loop waits on)."""
        return self.socket.fileno()

    @default_hook
    def get_request(self):
        """Accept a connection: return ``(socket, client_address)``; the socket gets
        TCP_NODELAY where ``tcp_nodelay`` asks for it."""
        request, client_address = self.socket.accept()
        if wants_nodelay(self):
            set_nodelay(request)
        return request, client_address

    def shutdown_request(self, request):
        try:
            # Tell the client we are done even if the handler leaked a reference to the socket.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_request(request)

    def close_request(self, request):
        request.close()


class UDPServer(TCPServer):
    """A server on a datagram socket (UDP by default): each datagram is one request, handed to
    the handler as ``(data, socket)``."""

    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    @default_hook
    def get_request(self):
        """Receive a datagram: return ``((data, socket), client_address)``."""
        data, client_address = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_address

    def server_activate(self):
        """Nothing to do: a datagram socket does not listen."""

    @noop_hook
    def shutdown_request(self, request):
        self.close_request(request)

    @noop_hook
    def close_request(self, request):
        pass


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(TCPServer):
        """TCPServer on a Unix stream socket: ``server_address`` is a filesystem path."""

        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        """UDPServer on a Unix datagram socket: ``server_address`` is a filesystem path."""

        address_family = socket.AF_UNIX
