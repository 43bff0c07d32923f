"""The greenlet servers: ``GreenletMixIn`` and the ``Greenlet*Server`` classes."""
import contextlib
import os
import socket
import struct
import threading
from time import monotonic

from greenlet import GreenletExit, getcurrent

from .. import _engine
from ..core.admission import release, serve_request
from ..core.hooks import in_request_context
from ..core.plan import listening
from ..core.settings import checked, seconds
from ..core.tls import register_wrapper as register_tls_wrapper
# handlers.pyi leaves out this private hook.
from ..handlers import _register_stream_socket
from ..models.greenlet import Greenlets, greenlet_state
from ..servers import TCPServer, UDPServer
from .hub import POLLIN, get_hub
from .socket import GreenSocket
from .waiter import HubWaiter

__all__ = ["GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "BLOCK_WARNING_ENV"]

# The handlers' compiled rfile/wfile may drive a GreenSocket's descriptor themselves (and wait
# through its hub), as they do a plain socket's.
_register_stream_socket(GreenSocket)


def _wrap_tls(context, sock):
    # ssl loads with the first TLS connection, not with the greenlet servers.
    from .tls import wrap_server_side

    return wrap_server_side(context, sock)


# With an ssl_context, a GreenSocket becomes a GreenTLSSocket, which parks its greenlet as the
# GreenSocket does.  (Its rfile/wfile are the stdlib's files over its own recv_into/sendall:
# OpenSSL, not the engine's streams, reads the descriptor.)
register_tls_wrapper(GreenSocket, _wrap_tls)

# Seconds a greenlet may keep the hub before a HubBlockedWarning, when a server does not say.
BLOCK_WARNING_ENV = "CYSOCKETSERVER_HUB_BLOCK_WARNING"


def _block_warning(server):
    """Seconds a greenlet may keep ``server``'s hub before a warning (None: no warning)."""
    limit = checked(server, "hub_block_warning", seconds, none_means="off")
    if limit is None:
        text = os.environ.get(BLOCK_WARNING_ENV)
        if text:
            try:
                limit = float(text)
            except ValueError:
                limit = None
    return limit


class GreenletMixIn:
    """Handle each request in a new greenlet on the hub of the thread running serve_forever().

    Every handler shares that one OS thread: a handler runs until it waits, and it must wait
    through the hub.  ``rfile``, ``wfile`` and ``self.request`` (a GreenSocket) do so.  A call
    that blocks the thread instead -- ``time.sleep()``, a plain blocking ``socket.socket``, a
    blocking library (a database driver, a DNS lookup, file I/O) -- freezes every client of
    the server until it returns.  Use ``cysocketserver.sleep()`` to sleep,
    ``cysocketserver.connect()`` for a client socket, and ``cysocketserver.to_thread()`` to
    run a blocking call in a worker thread while the hub serves the others.

    ``block_on_close``: server_close() (and serve_forever() after shutdown()) wait until the
    handlers have finished; when false, server_close() in the hub's thread ends them by raising
    GreenletExit in them.  While serve_forever() waits for its handlers after shutdown(), new
    clients are accepted and closed at once (reset), never left hanging in the backlog.
    ``hub_block_warning``: seconds; a greenlet that keeps the hub longer without waiting is
    reported with a HubBlockedWarning (default: the CYSOCKETSERVER_HUB_BLOCK_WARNING
    environment variable, or off).  With a ``drain_timeout``, that wait after shutdown() (and
    server_close()'s) lasts at most that long; the connections still open are then cut.
    """

    block_on_close = True
    hub_block_warning = None
    _model_class = Greenlets

    def _make_loop(self):
        # The listener is waited on through the hub, so the handlers run meanwhile.
        return _engine.current().ServeLoop(HubWaiter())

    def _enter_hub(self):
        st = greenlet_state(self)
        hub = get_hub()
        st.hub = hub
        hub.block_warning = _block_warning(self)
        return st, hub

    # -- serving ---------------------------------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Serve on this thread's hub until shutdown(); then, with block_on_close, wait for the
        running handlers (at most drain_timeout, when one is set) before returning."""
        st, hub = self._enter_hub()
        st.is_shut_down.clear()
        st.serving = getcurrent()
        finished = False
        try:
            super().serve_forever(poll_interval)
            finished = True
        finally:
            st.serving = None
            st.draining = finished and self.block_on_close and bool(st.handlers)
            st.is_shut_down.set()
            for waiter in st.shutdown_waiters:
                hub.wake(waiter)
            del st.shutdown_waiters[:]
        if st.draining:
            refuser = self._refuse_while_draining(st, hub)
            try:
                # With a drain_timeout: wait that long, then cut the connections still open.
                self._drain()
                self._greenlet_drain(st, hub)
            finally:
                st.draining = False
                if refuser is not None:
                    hub.wake(refuser)

    def shutdown(self):
        """Stop serve_forever() and wait until it has stopped accepting.

        From another thread this waits as the stdlib's does; from a handler on the hub, the
        handler waits (cooperatively) until the loop has stopped.
        """
        st = greenlet_state(self)
        hub = st.hub
        if hub is None or hub.thread_ident != threading.get_ident():
            self._loop.shutdown()
            return
        self._loop.request_shutdown(True)
        serving = st.serving
        me = getcurrent()
        if serving is None or me is serving:
            return
        while not st.is_shut_down.is_set():
            st.shutdown_waiters.append(me)
            hub.park()

    def handle_request(self):
        """Wait for one request (honouring the timeouts) and run its handler to the end."""
        st, hub = self._enter_hub()
        try:
            return super().handle_request()
        finally:
            self._greenlet_drain(st, hub)

    # -- the handlers ----------------------------------------------------------------------------

    @in_request_context
    def process_request(self, request, client_address):
        """Start a new greenlet (no thread) that handles the request; it runs on this thread's
        hub when the caller next waits."""
        self._model.start(self.process_request_greenlet, request, client_address)

    @in_request_context
    def process_request_greenlet(self, request, client_address):
        """What each handler greenlet runs: finish_request(), handle_error() on an exception,
        then shutdown_request(), as ThreadingMixIn's threads do."""
        try:
            serve_request(self, request, client_address)
        finally:
            self._greenlet_done(getcurrent())

    def _greenlet_done(self, glet):
        st = greenlet_state(self)
        st.handlers.pop(glet, None)
        if not st.handlers:
            st.idle.set()
            waiters = st.idle_waiters[:]
            del st.idle_waiters[:]
            for waiter in waiters:
                st.hub.wake(waiter)

    def _greenlet_drain(self, st, hub):
        """Run the hub here until every handler greenlet has finished."""
        me = getcurrent()
        if me in st.handlers:
            return  # a handler cannot wait for itself
        while st.handlers:
            st.idle_waiters.append(me)
            hub.park()

    def _refuse_while_draining(self, st, hub):
        """A greenlet that resets each new connection until the drain ends (stream servers)."""
        sock = getattr(self, "socket", None)
        if sock is None or sock.type != socket.SOCK_STREAM or sock.fileno() < 0:
            return None
        fd = sock.fileno()

        def refuse():
            reset = struct.pack("ii", 1, 0)
            try:
                with listening(self, fd, True):
                    # Until the drain ends, or server_close() (from another thread) closes the
                    # listener: then there is nothing left to refuse.
                    while st.draining and sock.fileno() == fd:
                        if hub.wait_fd(fd, POLLIN, monotonic() + HubWaiter.NAP) or not st.draining:
                            continue
                        try:
                            conn, _address = sock.accept()
                        except OSError:
                            continue
                        with contextlib.suppress(OSError):
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
                        conn.close()
            except OSError:
                pass  # the listener was closed under us
            finally:
                hub.forget_fd(fd)

        return hub.spawn(refuse)

    def _greenlet_kill(self, st, hub):
        for glet, request in list(st.handlers.items()):
            hub.kill(glet, GreenletExit())
            if not glet:
                # Never started: it will never run, so its request is ours to shut down.
                del st.handlers[glet]
                release(self, request)
        if not st.handlers:
            st.idle.set()
        self._greenlet_drain(st, hub)

    def server_close(self):
        """Close the server; then, in the hub's thread, wait for the handlers (block_on_close)
        or end them with GreenletExit."""
        super().server_close()
        st = greenlet_state(self)
        hub = st.hub
        if not st.handlers or hub is None:
            return
        if hub.thread_ident == threading.get_ident():
            if self.block_on_close:
                self._greenlet_drain(st, hub)
            else:
                self._greenlet_kill(st, hub)
        elif self.block_on_close and st.draining:
            st.idle.wait()


class GreenletTCPServer(GreenletMixIn, TCPServer):
    """TCPServer whose connections each run in a greenlet on the serving thread's hub.

    All the handlers share one OS thread: a blocking call in one (``time.sleep()``, a plain
    blocking socket, a blocking library) freezes every client.  Use ``cysocketserver.sleep()``,
    ``connect()`` and ``to_thread()`` instead; see GreenletMixIn.
    """


class GreenletUDPServer(GreenletMixIn, UDPServer):
    """UDPServer whose datagrams each run in a greenlet on the serving thread's hub (one OS
    thread for all: see GreenletMixIn on blocking calls)."""


if hasattr(socket, "AF_UNIX"):
    from ..servers import UnixDatagramServer, UnixStreamServer

    class GreenletUnixStreamServer(GreenletMixIn, UnixStreamServer):
        """UnixStreamServer whose connections each run in a greenlet on the serving thread's
        hub (one OS thread for all: see GreenletMixIn on blocking calls)."""

    class GreenletUnixDatagramServer(GreenletMixIn, UnixDatagramServer):
        """UnixDatagramServer whose datagrams each run in a greenlet on the serving thread's
        hub (one OS thread for all: see GreenletMixIn on blocking calls)."""

    __all__ += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]
